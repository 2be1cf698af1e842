//! One POP3 command line (its text, line end removed) -> a `Command` borrowing it.
//!
//! Parsing is two steps so that errors come in the order a client can use: first the
//! keyword (`Keyword::parse`: unknown command?), then the session checks that the
//! keyword is valid in its state, then `Command::parse` reads the arguments (bad
//! number?). A bad argument is a reply, not a Rust error a caller must map: every
//! `Err` is the exact `-ERR` line to send.

use crate::pop3::reply;

/// The commands we know (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    Capa,
    Quit,
    User,
    Pass,
    Auth,
    Stls,
    Stat,
    List,
    Uidl,
    Retr,
    Top,
    Dele,
    Rset,
    Noop,
}

/// Where a keyword may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Valid {
    Always,
    /// AUTHORIZATION state only.
    BeforeLogin,
    /// TRANSACTION state only.
    AfterLogin,
}

/// A command with its arguments read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    Capa,
    Quit,
    User {
        name: &'a str,
    },
    /// The password is the whole rest of the line, spaces included (RFC 1939 7 allows
    /// it, since PASS has exactly one argument).
    Pass {
        password: &'a str,
    },
    /// `mechanism` is `None` for a bare `AUTH`, which lists the mechanisms.
    Auth {
        mechanism: Option<&'a str>,
        initial_response: Option<&'a str>,
    },
    Stls,
    Stat,
    /// Numbers are as the client wrote them, at least 1; whether the message exists is
    /// the maildrop's question.
    List {
        number: Option<usize>,
    },
    Uidl {
        number: Option<usize>,
    },
    Retr {
        number: usize,
    },
    Top {
        number: usize,
        body_lines: usize,
    },
    Dele {
        number: usize,
    },
    Rset,
    Noop,
}

impl Keyword {
    /// Splits `line` into its keyword (case-insensitive) and the argument text after the
    /// first space. `None` for a keyword we do not know.
    pub(crate) fn parse(line: &str) -> Option<(Keyword, &str)> {
        let (word, args) = line.split_once(' ').unwrap_or((line, ""));
        let keywords = [
            ("CAPA", Keyword::Capa),
            ("QUIT", Keyword::Quit),
            ("USER", Keyword::User),
            ("PASS", Keyword::Pass),
            ("AUTH", Keyword::Auth),
            ("STLS", Keyword::Stls),
            ("STAT", Keyword::Stat),
            ("LIST", Keyword::List),
            ("UIDL", Keyword::Uidl),
            ("RETR", Keyword::Retr),
            ("TOP", Keyword::Top),
            ("DELE", Keyword::Dele),
            ("RSET", Keyword::Rset),
            ("NOOP", Keyword::Noop),
        ];
        keywords
            .iter()
            .find(|(text, _)| text.eq_ignore_ascii_case(word))
            .map(|&(_, keyword)| (keyword, args))
    }

    /// The states the keyword is valid in (RFC 1939 4, 5, 7; RFC 2449 5; RFC 2595 4).
    pub(crate) fn valid(self) -> Valid {
        match self {
            Keyword::Capa | Keyword::Quit => Valid::Always,
            Keyword::User | Keyword::Pass | Keyword::Auth | Keyword::Stls => Valid::BeforeLogin,
            Keyword::Stat
            | Keyword::List
            | Keyword::Uidl
            | Keyword::Retr
            | Keyword::Top
            | Keyword::Dele
            | Keyword::Rset
            | Keyword::Noop => Valid::AfterLogin,
        }
    }

    /// Commands that carry credentials in the clear unless TLS is active.
    pub(crate) fn is_login(self) -> bool {
        matches!(self, Keyword::User | Keyword::Pass | Keyword::Auth)
    }
}

impl<'a> Command<'a> {
    /// Reads the arguments of `keyword` from `args` (the text after the keyword's space).
    /// Arguments are separated by spaces; runs of spaces are taken as one, since being
    /// strict there would only break sloppy clients.
    ///
    /// # Errors
    /// The reply for a missing, extra or malformed argument.
    pub(crate) fn parse(keyword: Keyword, args: &'a str) -> Result<Command<'a>, &'static [u8]> {
        let mut words = args.split(' ').filter(|word| !word.is_empty());
        let command = match keyword {
            Keyword::Pass => {
                if args.is_empty() {
                    return Err(reply::PASS_NEEDS_PASSWORD);
                }
                return Ok(Command::Pass { password: args });
            }
            Keyword::Capa => Command::Capa,
            Keyword::Quit => Command::Quit,
            Keyword::Stls => Command::Stls,
            Keyword::Stat => Command::Stat,
            Keyword::Rset => Command::Rset,
            Keyword::Noop => Command::Noop,
            Keyword::User => Command::User {
                name: words.next().ok_or(reply::USER_NEEDS_NAME)?,
            },
            Keyword::Auth => Command::Auth {
                mechanism: words.next(),
                initial_response: words.next(),
            },
            Keyword::List => Command::List {
                number: words.next().map(parse_number).transpose()?,
            },
            Keyword::Uidl => Command::Uidl {
                number: words.next().map(parse_number).transpose()?,
            },
            Keyword::Retr => Command::Retr {
                number: parse_number(words.next().ok_or(reply::NEED_NUMBER)?)?,
            },
            Keyword::Dele => Command::Dele {
                number: parse_number(words.next().ok_or(reply::NEED_NUMBER)?)?,
            },
            Keyword::Top => Command::Top {
                number: parse_number(words.next().ok_or(reply::NEED_LINE_COUNT)?)?,
                body_lines: parse_line_count(words.next().ok_or(reply::NEED_LINE_COUNT)?)?,
            },
        };
        if words.next().is_some() {
            return Err(reply::TOO_MANY_ARGUMENTS);
        }
        Ok(command)
    }
}

/// A message number: digits only (no sign), at least 1, fitting a `usize`.
fn parse_number(text: &str) -> Result<usize, &'static [u8]> {
    match parse_digits(text) {
        Number::Value(0) => Err(reply::NUMBER_ZERO),
        Number::Value(number) => Ok(number),
        Number::NotDigits => Err(reply::NUMBER_NOT_DIGITS),
        Number::TooLarge => Err(reply::NUMBER_TOO_LARGE),
    }
}

/// TOP's count of body lines: digits only, 0 allowed (the header alone).
fn parse_line_count(text: &str) -> Result<usize, &'static [u8]> {
    match parse_digits(text) {
        Number::Value(n_lines) => Ok(n_lines),
        Number::NotDigits => Err(reply::LINES_NOT_DIGITS),
        Number::TooLarge => Err(reply::LINES_TOO_LARGE),
    }
}

enum Number {
    Value(usize),
    NotDigits,
    TooLarge,
}

/// `str::parse` would also take a leading `+`, which RFC 1939's grammar does not.
fn parse_digits(text: &str) -> Number {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Number::NotDigits;
    }
    let mut value: usize = 0;
    for b in text.bytes() {
        let Some(next) = value
            .checked_mul(10)
            .and_then(|value| value.checked_add(usize::from(b - b'0')))
        else {
            return Number::TooLarge;
        };
        value = next;
    }
    Number::Value(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a line parses to: `None` for an unknown keyword.
    type Parsed<'a> = Option<Result<Command<'a>, &'static [u8]>>;

    fn parse(line: &str) -> Parsed<'_> {
        let (keyword, args) = Keyword::parse(line)?;
        Some(Command::parse(keyword, args))
    }

    #[test]
    fn commands_and_their_arguments() {
        let cases: &[(&str, Parsed<'_>)] = &[
            ("CAPA", Some(Ok(Command::Capa))),
            ("capa", Some(Ok(Command::Capa))),
            ("QuIt", Some(Ok(Command::Quit))),
            ("STAT ", Some(Ok(Command::Stat))),
            ("STAT 1", Some(Err(reply::TOO_MANY_ARGUMENTS))),
            (
                "USER alice@example.test",
                Some(Ok(Command::User {
                    name: "alice@example.test",
                })),
            ),
            ("USER  alice", Some(Ok(Command::User { name: "alice" }))),
            ("USER", Some(Err(reply::USER_NEEDS_NAME))),
            ("USER a b", Some(Err(reply::TOO_MANY_ARGUMENTS))),
            (
                "PASS se cret ",
                Some(Ok(Command::Pass {
                    password: "se cret ",
                })),
            ),
            ("PASS", Some(Err(reply::PASS_NEEDS_PASSWORD))),
            ("PASS ", Some(Err(reply::PASS_NEEDS_PASSWORD))),
            (
                "AUTH",
                Some(Ok(Command::Auth {
                    mechanism: None,
                    initial_response: None,
                })),
            ),
            (
                "AUTH plain =",
                Some(Ok(Command::Auth {
                    mechanism: Some("plain"),
                    initial_response: Some("="),
                })),
            ),
            ("AUTH PLAIN a b", Some(Err(reply::TOO_MANY_ARGUMENTS))),
            ("LIST", Some(Ok(Command::List { number: None }))),
            ("LIST 007", Some(Ok(Command::List { number: Some(7) }))),
            ("LIST 0", Some(Err(reply::NUMBER_ZERO))),
            ("LIST +1", Some(Err(reply::NUMBER_NOT_DIGITS))),
            ("LIST -1", Some(Err(reply::NUMBER_NOT_DIGITS))),
            ("LIST 1x", Some(Err(reply::NUMBER_NOT_DIGITS))),
            ("LIST 1 2", Some(Err(reply::TOO_MANY_ARGUMENTS))),
            ("UIDL 3", Some(Ok(Command::Uidl { number: Some(3) }))),
            ("RETR 1", Some(Ok(Command::Retr { number: 1 }))),
            ("RETR", Some(Err(reply::NEED_NUMBER))),
            (
                "RETR 99999999999999999999999",
                Some(Err(reply::NUMBER_TOO_LARGE)),
            ),
            ("DELE 2", Some(Ok(Command::Dele { number: 2 }))),
            ("DELE", Some(Err(reply::NEED_NUMBER))),
            (
                "TOP 1 0",
                Some(Ok(Command::Top {
                    number: 1,
                    body_lines: 0,
                })),
            ),
            ("TOP 1", Some(Err(reply::NEED_LINE_COUNT))),
            ("TOP", Some(Err(reply::NEED_LINE_COUNT))),
            ("TOP 1 x", Some(Err(reply::LINES_NOT_DIGITS))),
            (
                "TOP 1 99999999999999999999999",
                Some(Err(reply::LINES_TOO_LARGE)),
            ),
            ("TOP 0 1", Some(Err(reply::NUMBER_ZERO))),
            ("TOP 1 2 3", Some(Err(reply::TOO_MANY_ARGUMENTS))),
            ("RSET", Some(Ok(Command::Rset))),
            ("NOOP", Some(Ok(Command::Noop))),
            ("STLS", Some(Ok(Command::Stls))),
            ("APOP alice 0123", None),
            ("", None),
            (" STAT", None),
            ("STATS", None),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), *expected, "{line:?}");
        }
    }

    #[test]
    fn numbers_up_to_the_machine_word() {
        let max = usize::MAX.to_string();
        assert_eq!(parse_number(&max), Ok(usize::MAX));
        let over = format!("{max}0");
        assert_eq!(parse_number(&over), Err(reply::NUMBER_TOO_LARGE));
    }
}
