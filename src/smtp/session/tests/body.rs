//! Bodies: DATA and BDAT, dot-unstuffing, smuggling, the line and size limits, and
//! reading big bodies straight into the body buffer.

use super::*;

#[test]
fn data_bodies() {
    let table: &[(&[u8], &[u8])] = &[
        // Just the terminator: an empty message.
        (b".\r\n", b""),
        (b"\r\n.\r\n", b"\r\n"),
        (b"a\r\n.\r\n", b"a\r\n"),
        // Dot-unstuffing: a stuffed "." line, a stuffed ".." line, a dot inside a line.
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"..a\r\nb.c\r\n.\r\n", b".a\r\nb.c\r\n"),
        // Lone dot not stuffed (a client bug) still loses its dot.
        (b".a\r\n.\r\n", b"a\r\n"),
        // 8-bit data passes untouched.
        (b"\xff\xfe\x00\r\n.\r\n", b"\xff\xfe\x00\r\n"),
    ];
    for (body, expected) in table {
        let test = run(&script(&[EHLO_MAIL_RCPT, b"DATA\r\n", body, b"NOOP\r\n"]));
        test.assert_codes(&[250, 250, 250, 354, 250, 250]);
        assert_eq!(test.stored.len(), 1, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(
            test.stored[0].body,
            *expected,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

/// Smuggling attempts: a second message hidden behind a bare-LF or bare-CR "end of data".
const SMUGGLING_TERMINATORS: [&[u8]; 6] = [
    b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r", b".\n",
];

#[test]
fn smuggled_messages_are_never_stored_or_executed() {
    for fake_end in SMUGGLING_TERMINATORS {
        let input = script(&[
            EHLO_MAIL_RCPT,
            b"DATA\r\nSubject: first\r\n\r\nfirst",
            fake_end,
            b"MAIL FROM:<evil@client.example>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n",
            b"\r\n.\r\nNOOP\r\n",
        ]);
        let test = run(&input);
        // 250 EHLO, 250 MAIL, 250 RCPT, 354 DATA, 550 refused at the real end, 250 NOOP:
        // the smuggled MAIL/RCPT/DATA were body text, never commands.
        test.assert_codes(&[250, 250, 250, 354, 550, 250]);
        assert!(
            test.stored.is_empty(),
            "{:?}",
            String::from_utf8_lossy(fake_end)
        );
        assert!(
            test.text()
                .contains("550 5.6.0 Message refused: bare CR or LF")
        );
        assert!(!test.session.in_transaction());
        // The session is still usable for the next transaction.
        let mut test = test;
        test.feed(&script(&[
            b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nok\r\n.\r\n",
        ]));
        assert_eq!(test.stored.len(), 1);
        assert_eq!(test.stored[0].body, b"ok\r\n");
        assert_chunking_invariant(&input);
    }
}

#[test]
fn long_text_line_and_big_body_are_refused_after_the_end() {
    let limit_line = |n_bytes: usize| {
        let mut line = vec![b'x'; n_bytes - 2];
        line.extend_from_slice(b"\r\n");
        line
    };
    let big_body: Vec<u8> = (0..30).flat_map(|_| limit_line(100)).collect(); // 3000 > 2000
    let exact_body: Vec<u8> = (0..20).flat_map(|_| limit_line(100)).collect(); // exactly 2000
    let table: Vec<(Vec<u8>, u16, &str)> = vec![
        (limit_line(1000), 250, "250 2.0.0 Ok: queued"),
        (
            limit_line(1001),
            552,
            "552 5.3.4 Message refused: text line longer than 1000 octets",
        ),
        (
            limit_line(100_000),
            552,
            "552 5.3.4 Message refused: text line longer",
        ),
        (exact_body, 250, "250 2.0.0 Ok: queued"),
        (big_body, 552, "552 5.3.4 Message size exceeds"),
    ];
    for (body, code, text) in table {
        let mut test = TestSession::new();
        test.feed(EHLO_MAIL_RCPT).feed(b"DATA\r\n");
        for piece in body.chunks(300) {
            test.feed(piece);
            assert!(test.session.expects_data());
            assert!(test.session.body.capacity_bytes() <= MESSAGE_BYTES_MAX);
        }
        test.feed(b".\r\nMAIL FROM:<>\r\nRCPT TO:<u@example.test>\r\nDATA\r\nnext\r\n.\r\n");
        test.assert_codes(&[250, 250, 250, 354, code, 250, 250, 354, 250]);
        assert!(test.text().contains(text), "{}", test.text());
        assert_eq!(
            test.stored.last().map(|stored| &stored.body[..]),
            Some(&b"next\r\n"[..])
        );
    }
}

#[test]
fn bdat_chunks() {
    // Chunks across reads; sizes are exact octets, no dot handling or line checks.
    let mut test = TestSession::new();
    test.feed(EHLO_MAIL_RCPT).feed(b"BDAT 11\r\n.\r\nab");
    assert!(test.session.expects_data());
    test.feed(b"\ncd\r\n.")
        .feed(b"BDAT 3 LAST\r\nxy")
        .feed(b"zNOOP\r\n");
    test.assert_codes(&[250, 250, 250, 250, 250, 250]);
    assert!(
        test.text().contains("250 2.0.0 11 octets received\r\n"),
        "{}",
        test.text()
    );
    assert_eq!(test.stored[0].body, b".\r\nab\ncd\r\n.xyz");

    check_codes(&[
        // BDAT 0 LAST ends an empty message.
        (
            &script(&[EHLO_MAIL_RCPT, b"BDAT 0 LAST\r\n"]),
            &[250, 250, 250, 250],
        ),
        (
            &script(&[EHLO_MAIL_RCPT, b"BDAT 0\r\nBDAT 1 LAST\r\nx"]),
            &[250, 250, 250, 250, 250],
        ),
        // Refused chunks are still consumed: "QUIT\r\n" below is chunk data.
        (b"BDAT 6\r\nQUIT\r\nNOOP\r\n", &[503, 250]),
        (b"EHLO c\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n", &[250, 503, 250]),
        (
            b"EHLO c\r\nMAIL FROM:<>\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n",
            &[250, 250, 503, 250],
        ),
        // Too big: 552 after the chunk, the transaction is reset, later chunks get 503
        // and are consumed too.
        (
            &script(&[
                EHLO_MAIL_RCPT,
                b"BDAT 1500\r\n",
                &[b'x'; 1500],
                b"BDAT 501\r\n",
                &[b'y'; 501],
                b"BDAT 4 LAST\r\nQUITNOOP\r\n",
            ]),
            &[250, 250, 250, 250, 552, 503, 250],
        ),
        // DATA after BDAT in one transaction.
        (
            &script(&[EHLO_MAIL_RCPT, b"BDAT 1\r\nxDATA\r\n"]),
            &[250, 250, 250, 250, 503],
        ),
        // Bad sizes: 501 and nothing consumed beyond the line.
        (
            &script(&[EHLO_MAIL_RCPT, b"BDAT x\r\nNOOP\r\n"]),
            &[250, 250, 250, 501, 250],
        ),
        (
            &script(&[EHLO_MAIL_RCPT, b"BDAT 5 NOTLAST\r\nNOOP\r\n"]),
            &[250, 250, 250, 501, 250],
        ),
        (
            &script(&[EHLO_MAIL_RCPT, b"BDAT 123456789012345678901\r\nNOOP\r\n"]),
            &[250, 250, 250, 501, 250],
        ),
    ]);
    // A huge declared chunk is refused but read (and thrown away) to its end.
    let mut test = TestSession::new();
    test.feed(EHLO_MAIL_RCPT).feed(b"BDAT 1000000 LAST\r\n");
    for _ in 0..250 {
        test.feed(&[b'z'; 4000]);
        assert!(test.session.body.capacity_bytes() <= MESSAGE_BYTES_MAX);
    }
    test.feed(b"NOOP\r\n");
    test.assert_codes(&[250, 250, 250, 552, 250]);
    assert!(test.stored.is_empty());
}

#[test]
fn body_buffer_is_given_back_after_big_messages() {
    let mut session_config = config();
    session_config.message_bytes_max = 4 * BODY_CAPACITY_KEPT_BYTES;
    let mut session = Session::new(Rc::new(session_config), None);
    let mut out = Vec::new();
    let mut input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n"]);
    for _ in 0..(2 * BODY_CAPACITY_KEPT_BYTES / 100) {
        input.extend_from_slice(&[b'b'; 98]);
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b".\r\n");
    assert_eq!(
        session.advance(&input, &mut out),
        (input.len(), Event::Deliver)
    );
    assert_eq!(
        session.transaction().body.len(),
        2 * BODY_CAPACITY_KEPT_BYTES / 100 * 100
    );
    assert!(session.body.capacity_bytes() <= 4 * BODY_CAPACITY_KEPT_BYTES);
    session.delivered(Delivery::Stored { queue_id: "q" }, &mut out);
    assert!(session.body.capacity_bytes() <= BODY_CAPACITY_KEPT_BYTES);
    session.shrink_body_buffer(1024);
    assert!(session.body.capacity_bytes() <= 1024);
}

/// Input fed in pieces cut at `cuts`, the reply codes and the stored bodies expected.
struct BigCase {
    input: Vec<u8>,
    cuts: Vec<usize>,
    codes: Vec<u16>,
    bodies: Vec<Vec<u8>>,
}

#[test]
fn big_bodies_read_into_the_body_buffer() {
    let (body_40k, wire_40k) = filler(400, true);
    let (body_64k, wire_64k) = filler(BIG_MESSAGE_BYTES_MAX / 100, false);
    let (_, wire_too_big) = filler(BIG_MESSAGE_BYTES_MAX / 100 + 1, false);
    let bdat_40k = vec![b'\n'; 40_000];
    let mut bdat_chunks = EHLO_MAIL_RCPT.to_vec();
    bdat_chunks.extend_from_slice(b"BDAT 30000\r\n");
    bdat_chunks.extend_from_slice(&bdat_40k[..30_000]);
    bdat_chunks.extend_from_slice(b"BDAT 10000 LAST\r\n");
    bdat_chunks.extend_from_slice(&bdat_40k[30_000..]);
    bdat_chunks.extend_from_slice(b"QUIT\r\n");
    // A message whose end is followed in the same read by a whole BDAT message, more
    // than the socket loop's 16 KiB read buffer.
    let mut data_then_bdat = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_40k]);
    data_then_bdat
        .extend_from_slice(b"MAIL FROM:<>\r\nRCPT TO:<v@example.test>\r\nBDAT 40000 LAST\r\n");
    data_then_bdat.extend_from_slice(&bdat_40k);
    data_then_bdat.extend_from_slice(b"NOOP\r\n");
    let mut bare_lf = wire_40k.clone();
    bare_lf.splice(36_050..36_050, *b"\n.\nMAIL FROM:<x@y.example>\r\n");
    let table: Vec<BigCase> = vec![
        BigCase {
            input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_40k, b"QUIT\r\n"]),
            cuts: vec![],
            codes: vec![250, 250, 250, 354, 250, 221],
            bodies: vec![body_40k.clone()],
        },
        // The terminator split over two reads into the body.
        BigCase {
            input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_40k, b"QUIT\r\n"]),
            cuts: vec![EHLO_MAIL_RCPT.len() + 6 + wire_40k.len() - 2],
            codes: vec![250, 250, 250, 354, 250, 221],
            bodies: vec![body_40k.clone()],
        },
        // Exactly at the limit, then one line over it.
        BigCase {
            input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_64k, b"QUIT\r\n"]),
            cuts: vec![],
            codes: vec![250, 250, 250, 354, 250, 221],
            bodies: vec![body_64k],
        },
        BigCase {
            input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire_too_big, b"QUIT\r\n"]),
            cuts: vec![],
            codes: vec![250, 250, 250, 354, 552, 221],
            bodies: vec![],
        },
        // Smuggling inside a big body is still body text, and refused.
        BigCase {
            input: script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &bare_lf, b"QUIT\r\n"]),
            cuts: vec![],
            codes: vec![250, 250, 250, 354, 550, 221],
            bodies: vec![],
        },
        BigCase {
            input: data_then_bdat,
            cuts: vec![],
            codes: vec![250, 250, 250, 354, 250, 250, 250, 250, 250],
            bodies: vec![body_40k.clone(), bdat_40k.clone()],
        },
        BigCase {
            input: bdat_chunks,
            cuts: vec![EHLO_MAIL_RCPT.len() + 12 + 100],
            codes: vec![250, 250, 250, 250, 250, 221],
            bodies: vec![bdat_40k.clone()],
        },
    ];
    for BigCase {
        input,
        cuts,
        codes,
        bodies,
    } in table
    {
        let test = run_both_ways(big_config(), &input, &cuts);
        test.assert_codes(&codes);
        let stored: Vec<&[u8]> = test.stored.iter().map(|stored| &stored.body[..]).collect();
        let expected: Vec<&[u8]> = bodies.iter().map(|body| &body[..]).collect();
        assert_eq!(stored, expected, "replies:\n{}", test.text());
        assert!(test.n_body_reads > 0, "never read into the body");
    }
}

#[test]
fn small_bodies_keep_a_small_buffer() {
    let (body, wire) = filler(10, true);
    let input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire, b"QUIT\r\n"]);
    let test = run_both_ways(big_config(), &input, &[]);
    test.assert_codes(&[250, 250, 250, 354, 250, 221]);
    assert_eq!(test.stored[0].body, body);
    assert_eq!(test.n_body_reads, 0);
    assert!(test.session.body.capacity_bytes() < BODY_READ_BYTES_MIN);
}

/// A limit well above what the tests below send, so only the growth rule limits memory.
const HUGE_MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;

#[track_caller]
fn assert_memory_follows_the_body(test: &TestSession) {
    let body_bytes = test.session.body.len();
    let capacity_bytes = test.session.body.capacity_bytes();
    assert!(
        capacity_bytes <= 2 * body_bytes + 2 * BODY_READ_BYTES_MIN,
        "{capacity_bytes} bytes held for a body of {body_bytes}"
    );
}

#[test]
fn body_room_grows_with_what_the_client_sent_not_what_it_announced() {
    let huge_config = || SessionConfig {
        message_bytes_max: HUGE_MESSAGE_BYTES_MAX,
        ..config()
    };
    // A chunk announced at 4 MB with one byte behind it.
    let mut test = TestSession::reading_into_body(huge_config());
    test.feed(EHLO_MAIL_RCPT)
        .feed(b"BDAT 4000000 LAST\r\n")
        .feed(b"x");
    assert_eq!(test.n_body_reads, 1);
    assert_eq!(test.session.body.as_slice(), b"x");
    assert!(test.session.body.capacity_bytes() <= BODY_READ_BYTES_MIN);
    assert_eq!(
        test.session.body_read_buffer().map(|room| room.len()),
        Some(BODY_READ_BYTES_MIN - 1)
    );
    // As the client sends, the room doubles with the body, up to the most one read takes.
    let mut sent_bytes = 1;
    let mut rooms = Vec::new();
    while sent_bytes < 1024 * 1024 {
        let room_bytes = test.session.body_read_buffer().map_or(0, |room| room.len());
        rooms.push(room_bytes);
        test.feed(&vec![b'y'; room_bytes]);
        sent_bytes += room_bytes;
        assert_eq!(test.session.body.len(), sent_bytes);
        assert_memory_follows_the_body(&test);
    }
    assert_eq!(
        rooms[..5],
        [
            BODY_READ_BYTES_MIN - 1,
            BODY_READ_BYTES_MIN,
            2 * BODY_READ_BYTES_MIN,
            4 * BODY_READ_BYTES_MIN,
            BODY_READ_BYTES_MAX
        ]
    );
    assert!(rooms.iter().all(|&room| room <= BODY_READ_BYTES_MAX));

    // A DATA body that stops at 20 KB holds about that, not 20 KB plus a whole read.
    let mut test = TestSession::reading_into_body(huge_config());
    let (_, wire) = filler(200, false);
    test.feed(EHLO_MAIL_RCPT)
        .feed(b"DATA\r\n")
        .feed(&wire[..20_000]);
    assert!(test.n_body_reads > 0);
    assert_memory_follows_the_body(&test);
    assert!(test.session.body.capacity_bytes() <= 2 * BODY_READ_BYTES_MIN);
}

#[test]
fn a_100_kib_body_still_takes_few_reads() {
    let session_config = SessionConfig {
        message_bytes_max: HUGE_MESSAGE_BYTES_MAX,
        ..config()
    };
    let (body, wire) = filler(1024, true);
    let input = script(&[EHLO_MAIL_RCPT, b"DATA\r\n", &wire, b"QUIT\r\n"]);
    let test = run_both_ways(session_config, &input, &[]);
    test.assert_codes(&[250, 250, 250, 354, 250, 221]);
    assert_eq!(test.stored[0].body, body);
    // Two 16 KiB reads through the read buffer take the body past BODY_READ_BYTES_MIN,
    // then the room doubles: 32 KiB and the rest.
    assert_eq!(test.n_body_reads, 2);
}

#[test]
fn a_longest_line_that_starts_with_a_dot_is_not_refused() {
    // RFC 5321 4.5.2 and 4.5.3.1.6: 1000 octets with CRLF, 1001 on the wire once stuffed.
    let line = |n_bytes: usize| {
        let mut line = b".".to_vec();
        line.resize(n_bytes - 2, b'x');
        line.extend_from_slice(b"\r\n");
        line
    };
    for (line, code) in [(line(1000), 250), (line(1001), 552)] {
        // Small, then behind 20 KB of text so it is read straight into the body.
        let (body, _) = filler(200, false);
        for prefix_bytes in [0, body.len()] {
            let mut message = body[..prefix_bytes].to_vec();
            message.extend_from_slice(&line);
            let mut wire = script(&[EHLO_MAIL_RCPT, b"DATA\r\n"]);
            dot_stuff(&message, &mut wire);
            wire.extend_from_slice(b"QUIT\r\n");
            let test = run_both_ways(big_config(), &wire, &[]);
            test.assert_codes(&[250, 250, 250, 354, code, 221]);
            let stored: Vec<&[u8]> = test.stored.iter().map(|s| &s.body[..]).collect();
            if code == 250 {
                assert_eq!(stored, [&message[..]]);
            } else {
                assert!(stored.is_empty());
            }
        }
    }
}
