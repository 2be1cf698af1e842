//! Chunking invariance, inputs a fuzzer finds first, and property tests over random
//! streams and bodies.

use super::*;

#[test]
fn every_split_gives_the_same_replies_and_bodies() {
    let scripts: Vec<Vec<u8>> = vec![
        script(&[EHLO_MAIL_RCPT, b"DATA\r\n..\r\n...x\r\nbody\r\n.\r\nQUIT\r\n"]),
        script(&[EHLO_MAIL_RCPT, b"DATA\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<v@example.test>\r\nBDAT 5\r\n\r\n.\r\nBDAT 2 LAST\r\n.\rNOOP\r\n"]),
        script(&[b"EHLO c\r\nMAIL FROM:<a@c.example> SIZE=9999\r\nBDAT 3\r\nabcRSET\r\nBOGUS\r\nVRFY x\r\nHELP\r\n"]),
        script(&[EHLO_MAIL_RCPT, b"DATA\r\nline\n.\nstill body\r\n.\r\nNOOP\r\n"]),
    ];
    for script in scripts {
        assert_chunking_invariant(&script);
    }
}

#[test]
fn fuzz_corpus_never_panics() {
    // Inputs that once worried us, or that a fuzzer finds first.
    let corpus: &[&[u8]] = &[
        b"",
        b"\r",
        b"\n",
        b"\r\n",
        b"\r\r\n\n",
        b"BDAT\r\n",
        b"BDAT 18446744073709551615 LAST\r\n",
        b"BDAT 18446744073709551615\r\nabc",
        b"MAIL FROM:<\"\\",
        b"MAIL FROM:<\"\\\xff\"@x>\r\n",
        b"MAIL FROM:<@>\r\n",
        b"MAIL FROM:<@,@:>\r\n",
        b"MAIL FROM:<a@[]>\r\n",
        b"MAIL FROM:<a@[IPv6:]>\r\n",
        b"MAIL FROM:<a@[:]>\r\n",
        b"RCPT TO:<\xc3\xa9@\xc3\xa9>\r\n",
        b"EHLO c\r\nMAIL FROM:<> SIZE=\r\n",
        b"EHLO c\r\nMAIL FROM:<>  \xff=\xff\r\n",
        b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.",
        b"STARTTLS\r\nSTARTTLS\r\n",
        b"\x00\x00\x00\r\n",
    ];
    for input in corpus {
        let whole = run_in_pieces(input, &[]);
        let every_byte: Vec<usize> = (1..input.len()).collect();
        assert_eq!(run_in_pieces(input, &every_byte), whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..8),
    ) {
        let mut test = TestSession::new();
        for chunk in &chunks {
            // `feed` asserts the consumed count and the remainder bound.
            test.feed(chunk);
        }
    }

    #[test]
    fn smtp_alphabet_streams_never_panic(
        pieces in proptest::collection::vec(proptest::sample::select(STREAM_PIECES), 0..40),
        cuts in proptest::collection::vec(0usize..400, 0..6),
    ) {
        let input = pieces.concat();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let whole = run_in_pieces(&input, &[]);
        prop_assert_eq!(run_in_pieces(&input, &cuts), whole);
    }

    #[test]
    fn stuffed_body_comes_back_identical_through_data(lines in body_lines(), cuts in proptest::collection::vec(0usize..1500, 0..8)) {
        let (original, wire) = stuffed(&lines);
        let input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire, b"QUIT\r\n"]);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (out, stored, ended) = run_in_pieces(&input, &cuts);
        prop_assert_eq!(ended, Some(Event::Quit));
        if original.len() <= MESSAGE_BYTES_MAX {
            prop_assert_eq!(reply_codes(&out), vec![220, 250, 250, 250, 354, 250, 221]);
            prop_assert_eq!(stored.len(), 1);
            prop_assert_eq!(&stored[0].body, &original);
        } else {
            prop_assert_eq!(reply_codes(&out), vec![220, 250, 250, 250, 354, 552, 221]);
            prop_assert!(stored.is_empty());
        }
    }

    #[test]
    fn body_comes_back_identical_through_bdat(
        body in proptest::collection::vec(any::<u8>(), 0..MESSAGE_BYTES_MAX),
        chunk_bytes in 1usize..700,
        cuts in proptest::collection::vec(0usize..2500, 0..8),
    ) {
        let mut input = EHLO_MAIL_RCPT.to_vec();
        let chunks: Vec<&[u8]> = body.chunks(chunk_bytes).collect();
        for (chunk_idx, chunk) in chunks.iter().enumerate() {
            let last = if chunk_idx + 1 == chunks.len() { " LAST" } else { "" };
            input.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
            input.extend_from_slice(chunk);
        }
        if chunks.is_empty() {
            input.extend_from_slice(b"BDAT 0 LAST\r\n");
        }
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (out, stored, _) = run_in_pieces(&input, &cuts);
        let mut expected = vec![220, 250, 250, 250];
        expected.extend(std::iter::repeat_n(250, chunks.len().max(1)));
        prop_assert_eq!(reply_codes(&out), expected);
        prop_assert_eq!(stored.len(), 1);
        prop_assert_eq!(&stored[0].body, &body);
    }

    /// Reading big bodies straight into the body buffer gives exactly what the copying
    /// path gives, whatever the body holds, whatever follows it, however it is cut.
    #[test]
    fn reading_into_the_body_matches_the_copying_path(
        n_filler_lines in 100usize..700,
        dotted in any::<bool>(),
        lines in body_lines(),
        tail in proptest::collection::vec(proptest::sample::select(STREAM_PIECES), 0..12),
        bdat_bytes in 0usize..40_000,
        cuts in proptest::collection::vec(0usize..100_000, 0..6),
    ) {
        let (_, filler_wire) = filler(n_filler_lines, dotted);
        let (_, lines_wire) = stuffed(&lines);
        let mut input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &filler_wire]);
        // `stuffed` ends with the terminator; the filler's is dropped so both are one body.
        input.truncate(input.len() - 3);
        input.extend_from_slice(&lines_wire);
        input.extend_from_slice(b"MAIL FROM:<>\r\nRCPT TO:<v@example.test>\r\n");
        input.extend_from_slice(format!("BDAT {bdat_bytes} LAST\r\n").as_bytes());
        input.extend(std::iter::repeat_n(b'.', bdat_bytes));
        input.extend_from_slice(&tail.concat());
        let mut cuts = cuts;
        cuts.sort_unstable();
        run_both_ways(big_config(), &input, &cuts);
    }

    /// Every command line gets exactly one reply, in order, however the stream is cut.
    #[test]
    fn one_reply_per_command(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("EHLO c"), Just("HELO c"), Just("MAIL FROM:<a@c.example>"), Just("MAIL FROM:<>"),
                Just("RCPT TO:<u@example.test>"), Just("RCPT TO:<u@other.example>"), Just("RCPT TO:<postmaster>"),
                Just("RSET"), Just("NOOP"), Just("VRFY u"), Just("HELP"), Just("BOGUS"), Just("MAIL FROM:x"),
            ],
            0..(ERRORS_MAX - 1),
        ),
        cuts in proptest::collection::vec(0usize..600, 0..6),
    ) {
        let input: Vec<u8> = lines.iter().flat_map(|line| format!("{line}\r\n").into_bytes()).collect();
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (out, _, ended) = run_in_pieces(&input, &cuts);
        prop_assert_eq!(ended, None);
        prop_assert_eq!(reply_codes(&out).len(), lines.len() + 1);
    }
}
