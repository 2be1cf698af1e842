//! Tests of the query language (this file) and of searching an inbox against a naive model
//! (`scan.rs`).

mod scan;

use proptest::prelude::*;

use super::query::parse_rfc3339_ms;
use super::*;

/// 2026-11-27T00:00:00Z in Unix milliseconds.
const NOV_27_MS: i64 = 1_795_737_600_000;

fn term(negated: bool, key: Key) -> Term {
    Term { negated, key }
}

fn parsed(text: &str) -> Vec<Term> {
    match Query::parse(text) {
        Ok(query) => query.terms().to_vec(),
        Err(error) => panic!("{text:?} did not parse: {error}"),
    }
}

#[test]
fn parses_every_key() {
    let text = |s: &str| s.to_string();
    let table: Vec<(&str, Vec<Term>)> = vec![
        ("", vec![]),
        ("   \t ", vec![]),
        ("hello", vec![term(false, Key::Text(text("hello")))]),
        (
            "Hello  WORLD",
            vec![
                term(false, Key::Text(text("hello"))),
                term(false, Key::Text(text("world"))),
            ],
        ),
        (
            "\"Your  code\tis\"",
            vec![term(false, Key::Text(text("your code is")))],
        ),
        (
            "from:Bob@X.test",
            vec![term(false, Key::From(text("bob@x.test")))],
        ),
        (
            "FROM:\"Bob Sender\"",
            vec![term(false, Key::From(text("bob sender")))],
        ),
        ("to:alice", vec![term(false, Key::To(text("alice")))]),
        (
            "subject:\"sign up\" -subject:newsletter",
            vec![
                term(false, Key::Subject(text("sign up"))),
                term(true, Key::Subject(text("newsletter"))),
            ],
        ),
        ("has:attachment", vec![term(false, Key::HasAttachment)]),
        ("has:Attachments", vec![term(false, Key::HasAttachment)]),
        ("-has:attachment", vec![term(true, Key::HasAttachment)]),
        ("is:unread", vec![term(false, Key::Unread)]),
        ("is:UNSEEN", vec![term(false, Key::Unread)]),
        (
            "is:read is:seen",
            vec![term(false, Key::Read), term(false, Key::Read)],
        ),
        ("after:2026-11-27", vec![term(false, Key::After(NOV_27_MS))]),
        (
            "before:2026-11-27T01:00:00+01:00",
            vec![term(false, Key::Before(NOV_27_MS))],
        ),
        (
            "after:2026-11-27t00:00:01.5z",
            vec![term(false, Key::After(NOV_27_MS + 1500))],
        ),
        ("tag:signup", vec![term(false, Key::Tag(text("signup")))]),
        // A colon after something that is not all letters is text.
        ("10:30", vec![term(false, Key::Text(text("10:30")))]),
        ("a1:b", vec![term(false, Key::Text(text("a1:b")))]),
        (
            "\"https://x.test/verify\"",
            vec![term(false, Key::Text(text("https://x.test/verify")))],
        ),
        // Escapes in phrases; other backslashes are themselves.
        (
            r#""say \"hi\" \\ c:\dir""#,
            vec![term(false, Key::Text(text(r#"say "hi" \ c:\dir"#)))],
        ),
        // A quote inside a word is part of it.
        ("don\"t", vec![term(false, Key::Text(text("don\"t")))]),
        (
            "-\"not this\"",
            vec![term(true, Key::Text(text("not this")))],
        ),
        (
            "ÄÖÜ straße",
            vec![
                term(false, Key::Text(text("äöü"))),
                term(false, Key::Text(text("straße"))),
            ],
        ),
        // Unicode whitespace separates terms too.
        (
            "a\u{3000}b",
            vec![
                term(false, Key::Text(text("a"))),
                term(false, Key::Text(text("b"))),
            ],
        ),
    ];
    for (text, expected) in table {
        assert_eq!(parsed(text), expected, "{text:?}");
    }
}

#[test]
fn refuses_bad_queries_precisely() {
    let long = "x".repeat(QUERY_BYTES_MAX + 1);
    let many = vec!["a"; TERMS_MAX + 1].join(" ");
    let table: Vec<(&str, QueryError)> = vec![
        (&long, QueryError::TooLong(QUERY_BYTES_MAX + 1)),
        (&many, QueryError::TooManyTerms),
        ("a \"open", QueryError::UnterminatedQuote(2)),
        ("\"open\\\"", QueryError::UnterminatedQuote(0)),
        ("\"ab\"cd", QueryError::AfterQuote(4)),
        ("subject:\"\"", QueryError::EmptyPhrase(8)),
        ("\"  \"", QueryError::EmptyPhrase(0)),
        ("-", QueryError::LoneMinus(0)),
        ("a - b", QueryError::LoneMinus(2)),
        ("form:bob", QueryError::UnknownKey("form".into())),
        ("https://x.test", QueryError::UnknownKey("https".into())),
        ("from:", QueryError::MissingValue("from")),
        ("subject: x", QueryError::MissingValue("subject")),
        ("has:pdf", QueryError::BadHas("pdf".into())),
        ("is:starred", QueryError::BadIs("starred".into())),
        (
            "before:yesterday",
            QueryError::BadTime("before", "yesterday".into()),
        ),
        (
            "after:2026-02-30",
            QueryError::BadTime("after", "2026-02-30".into()),
        ),
        (
            "after:2026-11-27T24:00:00Z",
            QueryError::BadTime("after", "2026-11-27T24:00:00Z".into()),
        ),
        (
            "after:2026-11-27T10:00:00",
            QueryError::BadTime("after", "2026-11-27T10:00:00".into()),
        ),
    ];
    for (text, expected) in table {
        assert_eq!(Query::parse(text), Err(expected), "{text:?}");
    }
    // A space ends a date: "10:00" is then text (digits are no key), not an error.
    assert_eq!(
        parsed("after:2026-11-27 10:00"),
        [
            term(false, Key::After(NOV_27_MS)),
            term(false, Key::Text("10:00".into())),
        ]
    );
}

/// Our RFC 3339 reader against the `time` crate's writer, over many instants and offsets.
#[test]
fn reads_rfc3339_as_the_time_crate_writes_it() {
    use time::format_description::well_known::Rfc3339;
    use time::{OffsetDateTime, UtcOffset};
    let first = OffsetDateTime::from_unix_timestamp(-62_135_596_800).expect("year 1");
    let last = OffsetDateTime::from_unix_timestamp(253_402_214_400).expect("year 9999");
    let mut unix_secs = first.unix_timestamp();
    let offsets_secs = [
        0,
        3600,
        -5 * 3600 - 1800,
        14 * 3600,
        -12 * 3600,
        5 * 3600 + 2700,
    ];
    let mut case_idx = 0;
    while unix_secs <= last.unix_timestamp() {
        let offset = UtcOffset::from_whole_seconds(offsets_secs[case_idx % offsets_secs.len()])
            .expect("offset");
        let millis = (case_idx * 37 % 1000) as i64;
        let instant = OffsetDateTime::from_unix_timestamp(unix_secs).expect("in range")
            + time::Duration::milliseconds(millis);
        let text = instant
            .to_offset(offset)
            .format(&Rfc3339)
            .expect("formattable");
        assert_eq!(
            parse_rfc3339_ms(&text),
            Some(unix_secs * 1000 + millis),
            "{text}"
        );
        unix_secs += 2_592_001 * 7 + 3_607;
        case_idx += 1;
    }
    let table: &[(&str, Option<i64>)] = &[
        ("1970-01-01", Some(0)),
        ("1970-01-01T00:00:00Z", Some(0)),
        ("1969-12-31T23:59:59.999Z", Some(-1)),
        ("2024-02-29", Some(1_709_164_800_000)),
        ("2023-02-29", None),
        ("2026-11-27T23:59:60Z", Some(NOV_27_MS + 86_400_000 - 1)),
        ("2026-11-27T00:00:00.123456789Z", Some(NOV_27_MS + 123)),
        ("2026-11-27T00:00:00.Z", None),
        ("2026-11-27T00:00Z", None),
        ("2026-11-27T00:00:00+0100", None),
        ("2026-11-27T00:00:00+24:00", None),
        ("2026-13-01", None),
        ("2026-00-01", None),
        ("2026-1-01", None),
        ("20261127", None),
        ("+2026-11-27", None),
        ("2026-11-27X", None),
        ("", None),
        ("２０２６-11-27", None),
    ];
    for (text, expected) in table {
        assert_eq!(parse_rfc3339_ms(text), *expected, "{text:?}");
    }
}

#[test]
fn folds_case_and_whitespace() {
    let table = [
        ("Hello World", "hello world"),
        ("  a\r\n\t b  ", "a b"),
        ("ÄBC Straße", "äbc straße"),
        ("ΣΑΣ", "σασ"),
        ("İ", "i\u{307}"),
        ("a\u{a0}\u{2003}b", "a b"),
        ("", ""),
    ];
    for (text, expected) in table {
        assert_eq!(fold(text), expected, "{text:?}");
    }
    // `fold_into` appends, and collapses a space at the seam too.
    let mut out = b"x ".to_vec();
    query::fold_into(" Y", &mut out);
    assert_eq!(out, b"x y");
}

/// Any query AST, with values as the parser makes them (folded, not empty).
fn any_query() -> impl Strategy<Value = Query> {
    let value = "[a-zA-Z0-9 \"\\\\:@.+éß-]{1,12}"
        .prop_map(|text| fold(&text))
        .prop_filter("not empty after folding", |text| !text.is_empty());
    // Instants from year 1 to 9998, in whole milliseconds.
    let instant = -62_135_596_800_000i64..253_370_764_800_000;
    let key = prop_oneof![
        value.clone().prop_map(Key::From),
        value.clone().prop_map(Key::To),
        value.clone().prop_map(Key::Subject),
        value.clone().prop_map(Key::Text),
        value.prop_map(Key::Tag),
        Just(Key::HasAttachment),
        Just(Key::Read),
        Just(Key::Unread),
        instant.clone().prop_map(Key::Before),
        instant.prop_map(Key::After),
    ];
    proptest::collection::vec((any::<bool>(), key), 0..=TERMS_MAX).prop_map(|terms| Query {
        terms: terms
            .into_iter()
            .map(|(negated, key)| Term { negated, key })
            .collect(),
    })
}

proptest! {
    /// A query written out by `Display` parses back to itself (when it fits the limit).
    #[test]
    fn display_parses_back(query in any_query()) {
        let text = query.to_string();
        if text.len() <= QUERY_BYTES_MAX {
            prop_assert_eq!(Query::parse(&text), Ok(query));
        }
    }

    /// Any text, and any text made of the language's own characters, parses or is refused;
    /// never a panic, never more than the limits.
    #[test]
    fn any_text_parses_or_is_refused(
        text in prop_oneof![
            any::<String>(),
            "[a-z:\"\\\\ \t-]{0,80}",
            "(-?(from|to|subject|has|is|before|after|tag|x):\"?[a-z0-9 \"\\\\:.+-]{0,12} ?){0,20}",
        ],
    ) {
        if let Ok(query) = Query::parse(&text) {
            prop_assert!(query.terms().len() <= TERMS_MAX);
            prop_assert!(text.len() <= QUERY_BYTES_MAX);
            for term in query.terms() {
                if let Key::From(value) | Key::To(value) | Key::Subject(value)
                    | Key::Text(value) | Key::Tag(value) = &term.key
                {
                    prop_assert!(!value.is_empty());
                    prop_assert_eq!(&fold(value), value, "values are folded");
                }
            }
        }
    }

    /// Folding (eight bytes at a time where it can) is what folding one character at a
    /// time gives, after any text already in the buffer.
    #[test]
    fn folding_matches_a_naive_model(
        before in "[a ]{0,2}",
        text in prop_oneof![
            "[a-zA-Z0-9 .,@\\[\\]{}`~\r\n\t\u{7f}]{0,90}",
            "[a-zA-Z  ÄöÉ\u{a0}\u{2003}İK]{0,60}",
            any::<String>(),
        ],
    ) {
        let mut naive = before.clone().into_bytes();
        for ch in text.chars() {
            if ch.is_whitespace() {
                if naive.last() != Some(&b' ') {
                    naive.push(b' ');
                }
            } else {
                naive.extend(ch.to_lowercase().collect::<String>().bytes());
            }
        }
        let mut ours = before.into_bytes();
        query::fold_into(&text, &mut ours);
        prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&naive));
    }

    /// Folding is idempotent and keeps UTF-8.
    #[test]
    fn folding_is_idempotent(text in any::<String>()) {
        let once = fold(&text);
        prop_assert_eq!(fold(&once), once.clone());
        let mut raw = Vec::new();
        query::fold_into(&text, &mut raw);
        prop_assert!(String::from_utf8(raw).is_ok());
    }
}
