//! Tests of the DATA scanner: a table of bodies, the line and size limits, and property
//! tests against a naive model, in any chunking, copying and in place.

use super::*;
use proptest::prelude::*;

const BODY_BYTES_MAX: usize = 10_000;

/// Result of one body: consumed bytes, and either the stored body or the refusal.
type Outcome = (usize, Result<Vec<u8>, Refusal>);

/// Where the pieces of an input of `len` bytes end, given cut points in any order.
fn piece_ends(cuts: &[usize], len: usize) -> Vec<usize> {
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&cut| cut < len).collect();
    ends.sort_unstable();
    ends.push(len);
    ends
}

/// Feeds `input` in the given pieces; `None` when the terminator never comes.
fn scan_in_pieces(input: &[u8], cuts: &[usize], body_bytes_max: usize) -> Option<Outcome> {
    let mut scanner = DataScanner::new();
    let mut body = Vec::new();
    let mut start_idx = 0;
    for end_idx in piece_ends(cuts, input.len()) {
        if end_idx < start_idx {
            continue;
        }
        let (n_consumed, done) =
            scanner.scan(&input[start_idx..end_idx], &mut body, body_bytes_max);
        assert!(n_consumed <= end_idx - start_idx);
        assert!(body.len() <= body_bytes_max && body.capacity() <= body_bytes_max.max(body.len()));
        if done {
            let consumed = start_idx + n_consumed;
            return Some((consumed, scanner.refusal().map_or(Ok(body), Err)));
        }
        assert_eq!(
            n_consumed,
            end_idx - start_idx,
            "without the end, all input is consumed"
        );
        start_idx = end_idx;
    }
    None
}

/// Feeds `input` in the given pieces the way `BodyBuffer` does: each piece lands right
/// after the body so far and is unstuffed in place. Checks that the bytes after the
/// terminator are left as they were.
fn scan_in_place_in_pieces(input: &[u8], cuts: &[usize], body_bytes_max: usize) -> Option<Outcome> {
    let mut scanner = DataScanner::new();
    // The body never holds more than the raw bytes it came from.
    let mut buf = vec![0u8; input.len()];
    let mut body_len = 0;
    let mut start_idx = 0;
    for end_idx in piece_ends(cuts, input.len()) {
        if end_idx < start_idx {
            continue;
        }
        let piece = &input[start_idx..end_idx];
        let raw_end_idx = body_len + piece.len();
        buf[body_len..raw_end_idx].copy_from_slice(piece);
        let scan = scanner.scan_in_place(&mut buf, body_len, raw_end_idx, body_bytes_max);
        assert!(scan.n_consumed <= piece.len());
        assert!(scan.body_len <= body_bytes_max && scan.body_len <= body_len + scan.n_consumed);
        if scan.finished {
            assert_eq!(
                &buf[body_len + scan.n_consumed..raw_end_idx],
                &piece[scan.n_consumed..],
                "bytes after the terminator were overwritten"
            );
            let body = buf[..scan.body_len].to_vec();
            return Some((
                start_idx + scan.n_consumed,
                scanner.refusal().map_or(Ok(body), Err),
            ));
        }
        assert_eq!(
            scan.n_consumed,
            piece.len(),
            "without the end, all input is consumed"
        );
        body_len = scan.body_len;
        start_idx = end_idx;
    }
    None
}

/// The naive model: search CRLF.CRLF in CRLF + input, then judge the lines.
fn naive(input: &[u8], body_bytes_max: usize) -> Option<Outcome> {
    let mut text = b"\r\n".to_vec();
    text.extend_from_slice(input);
    let end_idx = text.windows(5).position(|window| window == b"\r\n.\r\n")?;
    let raw = &text[2..end_idx + 2];
    let consumed = end_idx + 3;
    let bare = raw.iter().enumerate().any(|(idx, &b)| {
        (b == b'\r' && raw.get(idx + 1) != Some(&b'\n'))
            || (b == b'\n' && (idx == 0 || raw[idx - 1] != b'\r'))
    });
    let mut lines = Vec::new();
    let mut line_start_idx = 0;
    for idx in 0..raw.len() {
        if raw[idx] == b'\n' && idx > 0 && raw[idx - 1] == b'\r' {
            lines.push(&raw[line_start_idx..=idx]);
            line_start_idx = idx + 1;
        }
    }
    // Without bare newlines, raw ends in CRLF, so nothing is left over; with them the
    // message is refused anyway.
    let unstuffed = |line: &[u8]| line.strip_prefix(b".").unwrap_or(line).len();
    // The limit is on unstuffed lines: a stuffing dot does not count.
    let too_long = lines
        .iter()
        .any(|line| unstuffed(line) > TEXT_LINE_BYTES_MAX)
        || unstuffed(&raw[line_start_idx..]) > TEXT_LINE_BYTES_MAX;
    let body: Vec<u8> = lines
        .iter()
        .flat_map(|line| line.strip_prefix(b".").unwrap_or(line).iter().copied())
        .collect();
    let outcome = if bare {
        Err(Refusal::BareNewline)
    } else if too_long {
        Err(Refusal::LineTooLong)
    } else if body.len() > body_bytes_max {
        Err(Refusal::TooBig)
    } else {
        Ok(body)
    };
    Some((consumed, outcome))
}

#[test]
fn table() {
    let ok = |body: &[u8]| Ok(body.to_vec());
    let table: Vec<(&[u8], Option<Outcome>)> = vec![
        (b".\r\n", Some((3, ok(b"")))),
        (b".\r\nMAIL", Some((3, ok(b"")))),
        (b"a\r\n.\r\n", Some((6, ok(b"a\r\n")))),
        (b"..\r\n.\r\n", Some((7, ok(b".\r\n")))),
        (b"...\r\n.\r\n", Some((8, ok(b"..\r\n")))),
        (b".a\r\nb.\r\n.\r\n", Some((11, ok(b"a\r\nb.\r\n")))),
        (b"\r\n.\r\n", Some((5, ok(b"\r\n")))),
        (b"a\r\n.\r\nb", Some((6, ok(b"a\r\n")))),
        (b"a\r\n", None),
        (b"a\r\n.\r", None),
        (b"a\r\n.", None),
        // Smuggling: none of these end the data, and the body is refused when it does end.
        (
            b"a\n.\nMAIL FROM:<x@y>\r\n.\r\n",
            Some((24, Err(Refusal::BareNewline))),
        ),
        (
            b"a\n.\r\nMAIL FROM:<x@y>\r\n.\r\n",
            Some((25, Err(Refusal::BareNewline))),
        ),
        (
            b"a\r.\rMAIL FROM:<x@y>\r\n.\r\n",
            Some((24, Err(Refusal::BareNewline))),
        ),
        (
            b"a\r\n.\nMAIL FROM:<x@y>\r\n.\r\n",
            Some((25, Err(Refusal::BareNewline))),
        ),
        (
            b"a\r\n.\rMAIL FROM:<x@y>\r\n.\r\n",
            Some((25, Err(Refusal::BareNewline))),
        ),
        (b"a\n.\n", None),
        (b"a\r.\r", None),
        (b".\n", None),
        (b"\n.\r\n", None),
    ];
    for (input, expected) in table {
        assert_eq!(
            scan_in_pieces(input, &[], BODY_BYTES_MAX),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        let every_byte: Vec<usize> = (1..input.len()).collect();
        for cuts in [&[][..], &every_byte[..]] {
            assert_eq!(
                scan_in_place_in_pieces(input, cuts, BODY_BYTES_MAX),
                expected,
                "in place: {:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            naive(input, BODY_BYTES_MAX),
            expected,
            "model: {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn line_limit_counts_crlf_but_not_the_stuffing_dot() {
    let line = |n_bytes: usize, prefix: &[u8]| {
        let mut input = prefix.to_vec();
        input.resize(n_bytes - 2, b'x');
        input.extend_from_slice(b"\r\n.\r\n");
        input
    };
    let outcome = |input: Vec<u8>| {
        scan_in_pieces(&input, &[], BODY_BYTES_MAX).map(|(_, result)| result.map(|body| body.len()))
    };
    assert_eq!(outcome(line(1000, b"")), Some(Ok(1000)));
    assert_eq!(outcome(line(1001, b"")), Some(Err(Refusal::LineTooLong)));
    // RFC 5321 4.5.2: a 1000-octet line that starts with a dot is 1001 octets on the wire,
    // and still within the limit, which is on the line the client meant.
    assert_eq!(outcome(line(1001, b"..")), Some(Ok(1000)));
    assert_eq!(outcome(line(1002, b"..")), Some(Err(Refusal::LineTooLong)));
    // The same in place and in any chunking, across a dotted line's first bytes too.
    for (wire_bytes, expected) in [(1001, Ok(1000)), (1002, Err(Refusal::LineTooLong))] {
        let input = line(wire_bytes, b"..");
        for cuts in [&[][..], &[1], &[2], &[1, 2, 500, 999, 1000]] {
            assert_eq!(
                scan_in_place_in_pieces(&input, cuts, BODY_BYTES_MAX)
                    .map(|(_, result)| result.map(|body| body.len())),
                Some(expected),
                "{wire_bytes} cut at {cuts:?}"
            );
        }
    }
}

#[test]
fn size_limit_is_after_unstuffing_and_body_never_exceeds_it() {
    let body_bytes_max = 10;
    assert_eq!(
        scan_in_pieces(b"12345678\r\n.\r\n", &[], body_bytes_max),
        Some((13, Ok(b"12345678\r\n".to_vec())))
    );
    assert_eq!(
        scan_in_pieces(b"..2345678\r\n.\r\n", &[], body_bytes_max),
        Some((14, Ok(b".2345678\r\n".to_vec())))
    );
    assert_eq!(
        scan_in_pieces(b"123456789\r\n.\r\n", &[], body_bytes_max),
        Some((14, Err(Refusal::TooBig)))
    );
    // Everything is read to the end even after the limit.
    let mut big = vec![b'y'; 50_000];
    big.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(
        scan_in_pieces(&big, &[4096, 8192], body_bytes_max),
        Some((50_005, Err(Refusal::LineTooLong)))
    );
}

#[test]
fn scanner_is_reusable_after_a_refusal() {
    let mut scanner = DataScanner::new();
    let mut body = Vec::new();
    assert_eq!(scanner.scan(b"a\nb\r\n.\r\n", &mut body, 100), (8, true));
    assert_eq!(scanner.refusal(), Some(Refusal::BareNewline));
    scanner.reset();
    body.clear();
    assert_eq!(scanner.scan(b"ok\r\n.\r\n", &mut body, 100), (7, true));
    assert_eq!(scanner.refusal(), None);
    assert_eq!(body, b"ok\r\n");
}

#[test]
fn dot_stuff_doubles_leading_dots_and_ends_the_data() {
    let table: &[(&[u8], &[u8])] = &[
        (b"", b".\r\n"),
        (b"\r\n", b"\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"..a\r\nb.\r\n.\r\n", b"...a\r\nb.\r\n..\r\n.\r\n"),
        // No final CRLF: one is added, or the terminator would not be a line of its own.
        (b"a", b"a\r\n.\r\n"),
        (b"a\r\n.", b"a\r\n..\r\n.\r\n"),
        // A dot after a bare LF is doubled too (the scanner refuses the body anyway).
        (b"a\n.b\r\n", b"a\n..b\r\n.\r\n"),
    ];
    for (body, wire) in table {
        let mut out = b"kept".to_vec();
        dot_stuff(body, &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out[4..]),
            String::from_utf8_lossy(wire),
            "{:?}",
            String::from_utf8_lossy(body)
        );
        assert!(out.starts_with(b"kept"), "appends");
    }
}

fn text_lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(
        proptest::collection::vec(
            prop_oneof![Just(b'.'), Just(b'a'), Just(b' '), any::<u8>()],
            0..40,
        )
        .prop_map(|line| {
            line.into_iter()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect::<Vec<u8>>()
        }),
        0..30,
    )
}

proptest! {
    #[test]
    fn matches_naive_model_in_any_chunking(
        input in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')], 0..200),
        cuts in proptest::collection::vec(0usize..200, 0..8),
        body_bytes_max in 0usize..100,
    ) {
        let expected = naive(&input, body_bytes_max);
        prop_assert_eq!(scan_in_pieces(&input, &cuts, body_bytes_max), expected.clone());
        prop_assert_eq!(scan_in_place_in_pieces(&input, &cuts, body_bytes_max), expected);
    }

    /// Long bodies of realistic lines (the 64-byte block path's territory), with lines
    /// near the length limit, lines starting with a dot, and a few stray CR, LF or dot
    /// bytes anywhere.
    #[test]
    fn long_bodies_match_naive_model(
        lines in proptest::collection::vec(
            (prop_oneof![0usize..80, 60usize..130, 990usize..1010], any::<bool>()),
            0..60,
        ),
        strays in proptest::collection::vec(
            (any::<proptest::sample::Index>(), prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.')]),
            0..3,
        ),
        cuts in proptest::collection::vec(0usize..70_000, 0..6),
        body_bytes_max in prop_oneof![Just(usize::MAX), 0usize..70_000],
    ) {
        let mut input = Vec::new();
        for (line_idx, &(line_bytes, dotted)) in lines.iter().enumerate() {
            let line_start_idx = input.len();
            input.extend(std::iter::repeat_n(b'a' + (line_idx % 26) as u8, line_bytes));
            if dotted && line_bytes > 0 {
                input[line_start_idx] = b'.';
            }
            input.extend_from_slice(b"\r\n");
        }
        for (position, byte) in strays {
            let stray_idx = position.index(input.len() + 1);
            input.insert(stray_idx, byte);
        }
        input.extend_from_slice(b".\r\nQUIT\r\n");
        let expected = naive(&input, body_bytes_max);
        prop_assert_eq!(scan_in_pieces(&input, &cuts, body_bytes_max), expected.clone());
        prop_assert_eq!(scan_in_place_in_pieces(&input, &cuts, body_bytes_max), expected);
    }

    /// `dot_stuff` then the scanner gives back the body, in any chunking.
    #[test]
    fn stuffed_body_comes_back_identical(
        lines in text_lines(),
        final_crlf in any::<bool>(),
        cuts in proptest::collection::vec(0usize..2000, 0..10),
    ) {
        let mut body: Vec<u8> = lines.iter().flat_map(|line| [&line[..], b"\r\n"].concat()).collect();
        if !final_crlf {
            body.truncate(body.len().saturating_sub(2));
        }
        let mut wire = Vec::new();
        dot_stuff(&body, &mut wire);
        let mut expected_body = body.clone();
        if !expected_body.is_empty() && !expected_body.ends_with(b"\r\n") {
            expected_body.extend_from_slice(b"\r\n");
        }
        let expected = Some((wire.len(), Ok(expected_body)));
        prop_assert_eq!(scan_in_pieces(&wire, &cuts, BODY_BYTES_MAX), expected.clone());
        prop_assert_eq!(scan_in_place_in_pieces(&wire, &cuts, BODY_BYTES_MAX), expected);
    }
}
