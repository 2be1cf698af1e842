//! The Received header: its shapes, its line lengths, its date.

use super::*;
use crate::smtp::session::received::write_date;

#[test]
fn received_header_shapes() {
    let with_ip = |ip: IpAddr, helo: &[u8]| {
        let mut test = TestSession::with_config(config(), Some(ip));
        test.feed(&script(&[helo, b"MAIL FROM:<a@c.example>\r\nRCPT TO:<u@example.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\nx\r\n.\r\n"]));
        test.stored[0].received.clone()
    };
    assert_eq!(
        with_ip(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            b"EHLO client.example\r\n"
        ),
        "Received: from client.example ([192.0.2.1]) by mx.example.test (Mayfly) with ESMTP\r\n\
         \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
    );
    assert_eq!(
        with_ip(
            IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().expect("literal")),
            b"HELO c\r\n"
        ),
        "Received: from c ([IPv6:2001:db8::1]) by mx.example.test (Mayfly) with SMTP\r\n\
         \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
    );
    // An IPv4-mapped address (dual-stack listener) is shown as IPv4; parentheses in
    // the HELO name cannot open a comment.
    assert_eq!(
        with_ip(
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
            b"EHLO (evil)\r\n"
        ),
        "Received: from _evil_ ([192.0.2.7]) by mx.example.test (Mayfly) with ESMTP\r\n\
         \tid q1; Fri, 27 Nov 2026 22:15:44 +0000\r\n"
    );
}

#[test]
fn received_header_lines_stay_short_in_the_worst_case() {
    let mut session_config = config();
    session_config.hostname = "h".repeat(2000);
    session_config.domains = DomainPolicy::new::<&str>(&[]);
    let session_config = Rc::new(session_config);
    let mut session = Session::new(
        session_config,
        Some(IpAddr::V6(Ipv6Addr::new(0xffff, 1, 2, 3, 4, 5, 6, 7))),
    );
    let mut out = Vec::new();
    session.tls_started(&"v".repeat(500), &"c".repeat(500));
    let helo = format!("EHLO {}\r\n", "e".repeat(parser::HELO_BYTES_MAX));
    // The longest path: 64 + 1 + 189 + 2 = 256 octets.
    let rcpt = format!(
        "RCPT TO:<{}@{}.{}.{}.d>\r\n",
        "l".repeat(64),
        "d".repeat(63),
        "d".repeat(63),
        "d".repeat(59)
    );
    let input = script(&[
        helo.as_bytes(),
        b"MAIL FROM:<> SMTPUTF8\r\n",
        rcpt.as_bytes(),
        b"DATA\r\n.\r\n",
    ]);
    let (_, event) = session.advance(&input, &mut out);
    assert_eq!(event, Event::Deliver, "{}", String::from_utf8_lossy(&out));
    let mut header = Vec::new();
    session.write_received_header(&"i".repeat(500), SystemTime::now(), &mut header);
    let header = String::from_utf8(header).expect("UTF-8");
    assert!(header.ends_with("\r\n"));
    for line in header.split_terminator("\r\n") {
        assert!(
            line.len() <= RECEIVED_LINE_BYTES_MAX,
            "{} octets",
            line.len()
        );
        assert!(!line.contains('\r') && !line.contains('\n'));
    }
    assert!(header.contains(" with UTF8SMTPS (version="));
}

#[test]
fn received_date_is_rfc5322_even_for_odd_clocks() {
    for (now, expected) in [
        (
            UNIX_EPOCH + Duration::from_secs(NOW_UNIX_SECS),
            "Fri, 27 Nov 2026 22:15:44 +0000",
        ),
        (UNIX_EPOCH, "Thu, 01 Jan 1970 00:00:00 +0000"),
        (
            UNIX_EPOCH - Duration::from_secs(86_400),
            "Wed, 31 Dec 1969 00:00:00 +0000",
        ),
        // Outside what RFC 5322 can write: the epoch, not a panic.
        (
            UNIX_EPOCH + Duration::from_secs(400_000_000_000),
            "Thu, 01 Jan 1970 00:00:00 +0000",
        ),
    ] {
        let mut out = b"x".to_vec();
        write_date(now, &mut out);
        assert_eq!(String::from_utf8_lossy(&out[1..]), expected);
    }
}

/// The Received header of a one-recipient message sent after `helo`, with `client_ip`.
fn received_for(client_ip: Option<IpAddr>, helo: &str, rcpt: &str) -> String {
    let mut test = TestSession::with_config(config(), client_ip);
    test.feed(
        format!("{helo}\r\nMAIL FROM:<a@c.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\nx\r\n.\r\n")
            .as_bytes(),
    );
    test.assert_codes(&[250, 250, 250, 354, 250]);
    test.stored[0].received.clone()
}

#[test]
fn for_clause_only_with_an_address_that_cannot_forge_the_stamp() {
    const DATE: &str = "Fri, 27 Nov 2026 22:15:44 +0000";
    let forged = "\"a>; Thu, 01 Jan 1970 00:00:00 +0000 (x\"@example.test";
    let received = received_for(None, "EHLO c", forged);
    assert_eq!(
        received,
        format!("Received: from c by mx.example.test (Mayfly) with ESMTP\r\n\tid q1; {DATE}\r\n")
    );
    assert_eq!(received.matches("+0000").count(), 1);
    // Every character that could end the clause, open a comment or fold the line.
    for local in [
        "\"a;b\"",
        "\"a(b\"",
        "\"a)b\"",
        "\"a<b\"",
        "\"a>b\"",
        "\"a b\"",
        "\"a\\\\b\"",
        "\"a\\\"b\"",
    ] {
        let received = received_for(None, "EHLO c", &format!("{local}@example.test"));
        assert!(!received.contains(" for <"), "{local}: {received}");
        assert!(
            received.ends_with(&format!("\tid q1; {DATE}\r\n")),
            "{received}"
        );
    }
    // Any quoted local part is left out (the quotes could hide the rest); ordinary
    // addresses keep the clause.
    assert!(!received_for(None, "EHLO c", "\"a.b\"@example.test").contains(" for <"));
    for rcpt in [
        "u@example.test",
        "o'neil+tag@example.test",
        "a{b}c@x.sub.example.test",
    ] {
        assert!(
            received_for(None, "EHLO c", rcpt)
                .ends_with(&format!("\tid q1 for <{rcpt}>; {DATE}\r\n")),
            "{rcpt}"
        );
    }
}

#[test]
fn address_literal_helo_is_withheld_without_client_ip() {
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for helo in [
        "EHLO [192.0.2.7]",
        "EHLO [IPv6:2001:db8::7]",
        "EHLO 192.0.2.7",
        "EHLO 2001:db8::7",
    ] {
        let received = received_for(None, helo, "u@example.test");
        assert!(
            received.starts_with(
                "Received: from unknown (address literal withheld) by mx.example.test (Mayfly) with ESMTP\r\n"
            ),
            "{helo}: {received}"
        );
        assert!(!received.contains("192.0.2") && !received.contains("2001:db8"));
        // With the operator's leave, the client's own name for itself is kept.
        let literal = helo.trim_start_matches("EHLO ");
        assert!(
            received_for(Some(ip), helo, "u@example.test").starts_with(&format!(
                "Received: from {literal} ([192.0.2.1]) by mx.example.test"
            )),
            "{helo}"
        );
    }
    // A HELO name is printable ASCII of any kind; what could not be in a domain cannot
    // break the stamp either: no early `;` before the date, no comment, no quote.
    let received = received_for(
        None,
        "EHLO a;Thu,01-Jan-1970\"(x)<y>@z\\w",
        "u@example.test",
    );
    assert!(
        received.starts_with(
            "Received: from a_Thu_01-Jan-1970__x__y__z_w by mx.example.test (Mayfly) with ESMTP\r\n"
        ),
        "{received}"
    );
    assert_eq!(received.matches(';').count(), 1);
    // A domain name is not a literal.
    assert!(
        received_for(None, "EHLO client.example", "u@example.test")
            .starts_with("Received: from client.example by ")
    );
}
