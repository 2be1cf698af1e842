//! Parser tests: a table of lines and their commands, limits, and property tests
//! (rendered commands parse back; arbitrary lines never panic).

use super::*;
use proptest::prelude::*;

fn mail(reverse_path: &str, params: MailParams) -> Result<Command<'_>, Error> {
    Ok(Command::Mail {
        reverse_path,
        params,
    })
}

fn rcpt(mailbox: &str) -> Result<Command<'_>, Error> {
    Ok(Command::Rcpt {
        forward_path: ForwardPath::Mailbox(mailbox),
    })
}

const NO_PARAMS: MailParams = MailParams {
    size_bytes: None,
    body: None,
    smtputf8: false,
};

#[test]
fn parse_table() {
    let utf8 = MailParams {
        smtputf8: true,
        ..NO_PARAMS
    };
    let table: Vec<(&str, Result<Command<'_>, Error>)> = vec![
        // Simple commands, any case, trailing blanks tolerated.
        ("NOOP", Ok(Command::Noop)),
        ("noop anything at all", Ok(Command::Noop)),
        ("Rset", Ok(Command::Rset)),
        ("RSET   ", Ok(Command::Rset)),
        ("RSET x", Err(Error::Syntax(Verb::Rset))),
        ("QUIT", Ok(Command::Quit)),
        ("QUIT now", Err(Error::Syntax(Verb::Quit))),
        ("DATA", Ok(Command::Data)),
        ("data\t", Ok(Command::Data)),
        ("DATA x", Err(Error::Syntax(Verb::Data))),
        ("HELP", Ok(Command::Help)),
        ("HELP MAIL", Ok(Command::Help)),
        ("VRFY joe", Ok(Command::Vrfy)),
        ("VRFY", Err(Error::Syntax(Verb::Vrfy))),
        ("STARTTLS", Ok(Command::StartTls)),
        ("starttls x", Err(Error::Syntax(Verb::StartTls))),
        ("EXPN list", Err(Error::UnknownCommand)),
        ("", Err(Error::UnknownCommand)),
        ("   ", Err(Error::UnknownCommand)),
        ("MAILX FROM:<>", Err(Error::UnknownCommand)),
        ("STARTTLSX", Err(Error::UnknownCommand)),
        ("\u{e9}HLO x", Err(Error::UnknownCommand)),
        // HELO/EHLO.
        (
            "EHLO client.example",
            Ok(Command::Ehlo {
                domain: "client.example",
            }),
        ),
        (
            "ehlo [192.0.2.1]",
            Ok(Command::Ehlo {
                domain: "[192.0.2.1]",
            }),
        ),
        ("HELO x", Ok(Command::Helo { domain: "x" })),
        ("EHLO", Err(Error::Syntax(Verb::Ehlo))),
        ("EHLO a b", Err(Error::Syntax(Verb::Ehlo))),
        ("HELO \u{e9}", Err(Error::Syntax(Verb::Helo))),
        // MAIL: paths.
        ("MAIL FROM:<>", mail("", NO_PARAMS)),
        ("mail from:<a@b.example>", mail("a@b.example", NO_PARAMS)),
        ("MAIL FROM: <a@b.example>", mail("a@b.example", NO_PARAMS)),
        (
            "MAIL FROM:<\"a b\"@x.example>",
            mail("\"a b\"@x.example", NO_PARAMS),
        ),
        (
            "MAIL FROM:<\"a\\\"b@c\"@x.example>",
            mail("\"a\\\"b@c\"@x.example", NO_PARAMS),
        ),
        (
            "MAIL FROM:<@a.example,@b.example:u@d.example>",
            mail("u@d.example", NO_PARAMS),
        ),
        (
            "MAIL FROM:<u@[192.0.2.1]>",
            mail("u@[192.0.2.1]", NO_PARAMS),
        ),
        (
            "MAIL FROM:<u@[IPv6:2001:db8::1]>",
            mail("u@[IPv6:2001:db8::1]", NO_PARAMS),
        ),
        (
            "MAIL FROM:<u@[x-tag:abc]>",
            mail("u@[x-tag:abc]", NO_PARAMS),
        ),
        (
            "MAIL FROM:<first.last+tag@sub.example>",
            mail("first.last+tag@sub.example", NO_PARAMS),
        ),
        (
            "MAIL FROM:<j\u{f6}rg@b\u{fc}cher.example> SMTPUTF8",
            mail("j\u{f6}rg@b\u{fc}cher.example", utf8),
        ),
        ("MAIL FROM:a@b.example", Err(Error::Syntax(Verb::Mail))),
        ("MAIL TO:<a@b.example>", Err(Error::Syntax(Verb::Mail))),
        ("MAIL", Err(Error::Syntax(Verb::Mail))),
        ("MAIL FROM:", Err(Error::Syntax(Verb::Mail))),
        ("MAIL FROM:<a@b.example", Err(Error::BadSender)),
        ("MAIL FROM:<a>", Err(Error::BadSender)),
        ("MAIL FROM:<postmaster>", Err(Error::BadSender)),
        ("MAIL FROM:<@a.example:>", Err(Error::BadSender)),
        (
            "MAIL FROM:<@a.example,b.example:u@d.example>",
            Err(Error::BadSender),
        ),
        ("MAIL FROM:<a..b@x.example>", Err(Error::BadSender)),
        ("MAIL FROM:<.a@x.example>", Err(Error::BadSender)),
        ("MAIL FROM:<a.@x.example>", Err(Error::BadSender)),
        ("MAIL FROM:<a b@x.example>", Err(Error::BadSender)),
        ("MAIL FROM:<a@x..example>", Err(Error::BadSender)),
        ("MAIL FROM:<a@-x.example>", Err(Error::BadSender)),
        ("MAIL FROM:<a@x-.example>", Err(Error::BadSender)),
        ("MAIL FROM:<a@x.example.>", Err(Error::BadSender)),
        ("MAIL FROM:<a@>", Err(Error::BadSender)),
        ("MAIL FROM:<@x.example>", Err(Error::BadSender)),
        ("MAIL FROM:<a@[300.1.1.1]>", Err(Error::BadSender)),
        ("MAIL FROM:<a@[IPv6:zz]>", Err(Error::BadSender)),
        ("MAIL FROM:<a@[192.0.2.1>", Err(Error::BadSender)),
        (
            "MAIL FROM:<\"unterminated@x.example>",
            Err(Error::BadSender),
        ),
        (
            "MAIL FROM:<a@b.example>junk",
            Err(Error::Syntax(Verb::Mail)),
        ),
        // MAIL: parameters.
        (
            "MAIL FROM:<a@b.example> SIZE=1000",
            mail(
                "a@b.example",
                MailParams {
                    size_bytes: Some(1000),
                    ..NO_PARAMS
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> size=0 body=8bitmime smtputf8",
            mail(
                "a@b.example",
                MailParams {
                    size_bytes: Some(0),
                    body: Some(BodyType::EightBitMime),
                    smtputf8: true,
                },
            ),
        ),
        (
            "MAIL FROM:<> BODY=7BIT",
            mail(
                "",
                MailParams {
                    body: Some(BodyType::SevenBit),
                    ..NO_PARAMS
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example>  SIZE=5   SMTPUTF8  ",
            mail(
                "a@b.example",
                MailParams {
                    size_bytes: Some(5),
                    smtputf8: true,
                    ..NO_PARAMS
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=18446744073709551615",
            mail(
                "a@b.example",
                MailParams {
                    size_bytes: Some(u64::MAX),
                    ..NO_PARAMS
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=18446744073709551616",
            mail(
                "a@b.example",
                MailParams {
                    size_bytes: Some(u64::MAX),
                    ..NO_PARAMS
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=99999999999999999999999999999",
            mail(
                "a@b.example",
                MailParams {
                    size_bytes: Some(u64::MAX),
                    ..NO_PARAMS
                },
            ),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=",
            Err(Error::Syntax(Verb::Mail)),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE",
            Err(Error::Syntax(Verb::Mail)),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=12a",
            Err(Error::Syntax(Verb::Mail)),
        ),
        (
            "MAIL FROM:<a@b.example> SIZE=1 SIZE=2",
            Err(Error::Syntax(Verb::Mail)),
        ),
        (
            "MAIL FROM:<a@b.example> BODY=BINARYMIME",
            Err(Error::ParamNotSupported),
        ),
        (
            "MAIL FROM:<a@b.example> BODY",
            Err(Error::Syntax(Verb::Mail)),
        ),
        (
            "MAIL FROM:<a@b.example> SMTPUTF8=yes",
            Err(Error::Syntax(Verb::Mail)),
        ),
        (
            "MAIL FROM:<a@b.example> RET=FULL",
            Err(Error::ParamNotSupported),
        ),
        (
            "MAIL FROM:<a@b.example> AUTH=<>",
            Err(Error::ParamNotSupported),
        ),
        ("MAIL FROM:<a@b.example> =x", Err(Error::Syntax(Verb::Mail))),
        (
            "MAIL FROM:<a@b.example> X=a=b",
            Err(Error::Syntax(Verb::Mail)),
        ),
        // RCPT.
        ("RCPT TO:<u@example.test>", rcpt("u@example.test")),
        ("rcpt to: <u@example.test>", rcpt("u@example.test")),
        (
            "RCPT TO:<@relay.example:u@example.test>",
            rcpt("u@example.test"),
        ),
        (
            "RCPT TO:<postmaster>",
            Ok(Command::Rcpt {
                forward_path: ForwardPath::Postmaster,
            }),
        ),
        (
            "RCPT TO:<PostMaster>",
            Ok(Command::Rcpt {
                forward_path: ForwardPath::Postmaster,
            }),
        ),
        (
            "RCPT TO:<postmaster@example.test>",
            rcpt("postmaster@example.test"),
        ),
        ("RCPT TO:<>", Err(Error::BadRecipient)),
        ("RCPT TO:<u>", Err(Error::BadRecipient)),
        ("RCPT TO:u@example.test", Err(Error::Syntax(Verb::Rcpt))),
        ("RCPT FROM:<u@example.test>", Err(Error::Syntax(Verb::Rcpt))),
        (
            "RCPT TO:<u@example.test> NOTIFY=NEVER",
            Err(Error::ParamNotSupported),
        ),
        (
            "RCPT TO:<u@example.test> ==",
            Err(Error::Syntax(Verb::Rcpt)),
        ),
        ("RCPT TO:<u@example.test>x", Err(Error::Syntax(Verb::Rcpt))),
        // BDAT.
        (
            "BDAT 0",
            Ok(Command::Bdat {
                chunk_bytes: 0,
                last: false,
            }),
        ),
        (
            "BDAT 1000 LAST",
            Ok(Command::Bdat {
                chunk_bytes: 1000,
                last: true,
            }),
        ),
        (
            "bdat 7 last",
            Ok(Command::Bdat {
                chunk_bytes: 7,
                last: true,
            }),
        ),
        ("BDAT", Err(Error::Syntax(Verb::Bdat))),
        ("BDAT x", Err(Error::Syntax(Verb::Bdat))),
        ("BDAT -1", Err(Error::Syntax(Verb::Bdat))),
        ("BDAT 10 FIRST", Err(Error::Syntax(Verb::Bdat))),
        ("BDAT 10 LAST x", Err(Error::Syntax(Verb::Bdat))),
        (
            "BDAT 99999999999999999999999",
            Err(Error::Syntax(Verb::Bdat)),
        ),
    ];
    for (line, expected) in table {
        assert_eq!(parse_command(line.as_bytes()), expected, "{line:?}");
    }
}

#[test]
fn invalid_utf8_and_control_bytes() {
    let table: [(&[u8], Result<Command<'_>, Error>); 6] = [
        (b"MAIL FROM:<\xff@x.example>", Err(Error::InvalidUtf8)),
        (b"RCPT TO:<a@\xc3>", Err(Error::InvalidUtf8)),
        (b"NOOP \xff", Ok(Command::Noop)),
        (b"\xff\xfe", Err(Error::UnknownCommand)),
        (b"MAIL FROM:<a\x01@x.example>", Err(Error::BadSender)),
        (b"EHLO a\x7f", Err(Error::Syntax(Verb::Ehlo))),
    ];
    for (line, expected) in table {
        assert_eq!(
            parse_command(line),
            expected,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn length_limits() {
    let local = |n: usize| "a".repeat(n);
    let check = |address: String, ok: bool| {
        let line = format!("RCPT TO:<{address}>");
        let parsed = parse_command(line.as_bytes());
        assert_eq!(parsed.is_ok(), ok, "{} bytes: {parsed:?}", address.len());
    };
    check(format!("{}@x.example", local(64)), true);
    check(format!("{}@x.example", local(65)), false);
    // Labels up to 63 octets.
    check(format!("u@{}.example", local(63)), true);
    check(format!("u@{}.example", local(64)), false);
    // Path including brackets up to 256 octets.
    let domain_for = |path_bytes: usize| {
        let mut domain = String::new();
        let domain_bytes = path_bytes - 2 - 2; // "<", ">", "u@"
        while domain.len() < domain_bytes {
            if !domain.is_empty() {
                domain.push('.');
            }
            let label_bytes = (domain_bytes - domain.len()).min(50);
            domain.push_str(&"d".repeat(label_bytes));
        }
        domain
    };
    check(format!("u@{}", domain_for(256)), true);
    check(format!("u@{}", domain_for(257)), false);
}

#[test]
fn domain_of_takes_the_part_after_the_last_at() {
    for (mailbox, domain) in [
        ("u@example.test", "example.test"),
        ("\"a@b\"@example.test", "example.test"),
        ("u@[192.0.2.1]", "[192.0.2.1]"),
        ("nobody", ""),
    ] {
        assert_eq!(domain_of(mailbox), domain);
    }
}

/// Owned data for a generated command, so the borrowed `Command` can point into it.
#[derive(Debug, Clone)]
enum Owned {
    Helo(String),
    Ehlo(String),
    Mail(String, MailParams),
    Rcpt(Option<String>),
    Bdat(u64, bool),
    Simple(Command<'static>),
}

impl Owned {
    fn command(&self) -> Command<'_> {
        match self {
            Owned::Helo(domain) => Command::Helo { domain },
            Owned::Ehlo(domain) => Command::Ehlo { domain },
            Owned::Mail(reverse_path, params) => Command::Mail {
                reverse_path,
                params: *params,
            },
            Owned::Rcpt(None) => Command::Rcpt {
                forward_path: ForwardPath::Postmaster,
            },
            Owned::Rcpt(Some(mailbox)) => Command::Rcpt {
                forward_path: ForwardPath::Mailbox(mailbox),
            },
            Owned::Bdat(chunk_bytes, last) => Command::Bdat {
                chunk_bytes: *chunk_bytes,
                last: *last,
            },
            Owned::Simple(command) => *command,
        }
    }
}

fn mailbox_strategy() -> impl Strategy<Value = String> {
    let local = prop_oneof![
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[a-zA-Z0-9_-]{1,8}){0,3}",
        "\"[a-z @.,<>:;()\\[\\]]{0,12}\"",
        "[a-z\u{e0}-\u{ff}\u{4e00}-\u{4e10}]{1,8}",
    ];
    let domain = prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,4}",
        "\\[(25[0-5]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|1[0-9]{2}|[1-9]?[0-9])){3}\\]",
        "[\u{e0}-\u{ff}]{1,6}\\.example",
    ];
    (local, domain).prop_map(|(local, domain)| format!("{local}@{domain}"))
}

fn command_strategy() -> impl Strategy<Value = Owned> {
    let params = (
        proptest::option::of(any::<u64>()),
        proptest::option::of(prop_oneof![
            Just(BodyType::SevenBit),
            Just(BodyType::EightBitMime)
        ]),
        any::<bool>(),
    )
        .prop_map(|(size_bytes, body, smtputf8)| MailParams {
            size_bytes,
            body,
            smtputf8,
        });
    prop_oneof![
        "[a-zA-Z0-9.\\[\\]:_-]{1,40}".prop_map(Owned::Helo),
        "[a-zA-Z0-9.\\[\\]:_-]{1,40}".prop_map(Owned::Ehlo),
        (prop_oneof![Just(String::new()), mailbox_strategy()], params)
            .prop_map(|(path, params)| Owned::Mail(path, params)),
        proptest::option::of(mailbox_strategy()).prop_map(Owned::Rcpt),
        (any::<u64>(), any::<bool>()).prop_map(|(n, last)| Owned::Bdat(n, last)),
        prop_oneof![
            Just(Command::Data),
            Just(Command::Rset),
            Just(Command::Noop),
            Just(Command::Quit),
            Just(Command::Vrfy),
            Just(Command::Help),
            Just(Command::StartTls),
        ]
        .prop_map(Owned::Simple),
    ]
}

proptest! {
    #[test]
    fn rendered_commands_parse_back(owned in proptest::collection::vec(command_strategy(), 1..20)) {
        let mut text = Vec::new();
        for command in &owned {
            command.command().write_to(&mut text);
        }
        // Split the rendered stream at CRLF and parse each line, as the session does.
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|line| !line.is_empty()).collect();
        prop_assert_eq!(lines.len(), owned.len());
        for (line, command) in lines.iter().zip(&owned) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            prop_assert_eq!(parse_command(line), Ok(command.command()));
        }
    }

    #[test]
    fn arbitrary_lines_never_panic(line in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_command(&line);
    }

    #[test]
    fn smtp_alphabet_lines_never_panic(line in "(MAIL FROM:|RCPT TO:|BDAT |EHLO |[<>@.:,\"\\\\\\[\\] =a-zA-Z0-9\u{e9}-]){0,30}") {
        let parsed = parse_command(line.as_bytes());
        // Whatever parsed must render and parse back to the same thing.
        if let Ok(command) = parsed {
            let mut text = Vec::new();
            command.write_to(&mut text);
            let rendered = text.strip_suffix(b"\r\n").unwrap_or(&text);
            prop_assert_eq!(parse_command(rendered), Ok(command));
        }
    }
}
