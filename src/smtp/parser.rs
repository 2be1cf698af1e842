//! One SMTP command line (without its CRLF) -> `Command`, borrowing the input.
//!
//! No IO, no allocation, never panics on any bytes. Framing (finding the CRLF, over-long
//! lines, bare CR/LF) is the session's job; this module only gives a complete line meaning.
//! Errors are a small `Error` enum; the session maps each to exactly one reply in `reply.rs`.
//!
//! Address syntax follows RFC 5321 4.1.2 with the RFC 6531 extension that lets UTF-8
//! appear in local parts and domains. The parser accepts non-ASCII addresses always, so the
//! session can answer `553 5.6.7` (needs SMTPUTF8) instead of a vaguer syntax error.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use memchr::memchr;

/// Longest command line including its CRLF (RFC 5321 4.5.3.1.4).
pub const COMMAND_LINE_BYTES_MAX: usize = 512;
/// Longest local part (RFC 5321 4.5.3.1.1).
pub const LOCAL_PART_BYTES_MAX: usize = 64;
/// Longest domain (RFC 5321 4.5.3.1.2).
pub const DOMAIN_BYTES_MAX: usize = 255;
/// Longest reverse- or forward-path, including `<`, `>` and any source route (RFC 5321 4.5.3.1.3).
pub const PATH_BYTES_MAX: usize = 256;
/// Longest HELO/EHLO argument: a domain or an address literal.
pub const HELO_BYTES_MAX: usize = 255;
/// Longest domain label (RFC 1035 2.3.4).
const LABEL_BYTES_MAX: usize = 63;
/// Longest command word we know (`STARTTLS`).
const VERB_BYTES_MAX: usize = 8;
/// `u64::MAX` has 20 digits; a longer BDAT size cannot be a real one.
const NUMBER_DIGITS_MAX: usize = 20;

/// The command words, for replies that depend on which command failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Helo,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
}

/// A parsed command line; strings borrow the input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `HELO domain`.
    Helo { domain: &'a str },
    /// `EHLO domain`.
    Ehlo { domain: &'a str },
    /// `MAIL FROM:<path> params`; `reverse_path` is the mailbox without brackets and without
    /// a source route, `""` for the null path `<>`.
    Mail {
        reverse_path: &'a str,
        params: MailParams,
    },
    /// `RCPT TO:<path>`.
    Rcpt { forward_path: ForwardPath<'a> },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat { chunk_bytes: u64, last: bool },
    /// `RSET`.
    Rset,
    /// `NOOP [anything]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`; the argument is not kept because we never verify.
    Vrfy,
    /// `HELP [anything]`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
}

/// The forward-path of RCPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardPath<'a> {
    /// `<postmaster>` without a domain (RFC 5321 4.5.1): must always be accepted.
    Postmaster,
    /// A mailbox `local@domain`, without brackets and without a source route.
    Mailbox(&'a str),
}

/// The MAIL parameters we implement (RFC 1870, RFC 6152, RFC 6531).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `SIZE=n`: the client's estimate of the message size.
    pub size_bytes: Option<u64>,
    /// `BODY=7BIT|8BITMIME`.
    pub body: Option<BodyType>,
    /// `SMTPUTF8`: addresses and headers may contain UTF-8.
    pub smtputf8: bool,
}

/// The `BODY=` values we implement (we do not offer BINARYMIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyType {
    SevenBit,
    EightBitMime,
}

/// Why a command line did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not a command word we know (`500 5.5.1`).
    UnknownCommand,
    /// A known command with malformed arguments (`501 5.5.4` with that command's usage).
    Syntax(Verb),
    /// Arguments that are not valid UTF-8 (`501 5.5.4`).
    InvalidUtf8,
    /// MAIL with a malformed address (`501 5.1.7`).
    BadSender,
    /// RCPT with a malformed address (`501 5.1.3`).
    BadRecipient,
    /// A well-formed MAIL/RCPT parameter that we do not implement (`555 5.5.4`).
    ParamNotSupported,
}

/// Parses one command line given without its CRLF.
///
/// Trailing spaces and tabs are ignored (some clients send them); the command word is
/// case-insensitive and separated from its arguments by one or more spaces.
pub fn parse_command(line: &[u8]) -> Result<Command<'_>, Error> {
    let line = trim_end(line);
    let (word, arg) = match memchr(b' ', line) {
        Some(space_idx) => (&line[..space_idx], trim_start(&line[space_idx + 1..])),
        None => (line, &line[line.len()..]),
    };
    let verb = verb_of(word).ok_or(Error::UnknownCommand)?;
    match verb {
        Verb::Data | Verb::Rset | Verb::Quit | Verb::StartTls if !arg.is_empty() => {
            Err(Error::Syntax(verb))
        }
        Verb::Data => Ok(Command::Data),
        Verb::Rset => Ok(Command::Rset),
        Verb::Quit => Ok(Command::Quit),
        Verb::StartTls => Ok(Command::StartTls),
        Verb::Noop => Ok(Command::Noop),
        Verb::Help => Ok(Command::Help),
        Verb::Vrfy if arg.is_empty() => Err(Error::Syntax(verb)),
        Verb::Vrfy => Ok(Command::Vrfy),
        Verb::Helo | Verb::Ehlo => {
            let domain = parse_helo_domain(arg).ok_or(Error::Syntax(verb))?;
            Ok(match verb {
                Verb::Helo => Command::Helo { domain },
                _ => Command::Ehlo { domain },
            })
        }
        Verb::Bdat => parse_bdat(arg).ok_or(Error::Syntax(verb)),
        Verb::Mail => parse_mail(arg),
        Verb::Rcpt => parse_rcpt(arg),
    }
}

impl Command<'_> {
    /// Writes the command in canonical form with its CRLF; `parse_command` reads it back
    /// as an equal `Command`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Command::Helo { domain } => {
                out.extend_from_slice(b"HELO ");
                out.extend_from_slice(domain.as_bytes());
            }
            Command::Ehlo { domain } => {
                out.extend_from_slice(b"EHLO ");
                out.extend_from_slice(domain.as_bytes());
            }
            Command::Mail {
                reverse_path,
                params,
            } => {
                out.extend_from_slice(b"MAIL FROM:<");
                out.extend_from_slice(reverse_path.as_bytes());
                out.push(b'>');
                if let Some(size_bytes) = params.size_bytes {
                    // Writing into a Vec cannot fail.
                    let _ = write!(out, " SIZE={size_bytes}");
                }
                match params.body {
                    Some(BodyType::SevenBit) => out.extend_from_slice(b" BODY=7BIT"),
                    Some(BodyType::EightBitMime) => out.extend_from_slice(b" BODY=8BITMIME"),
                    None => {}
                }
                if params.smtputf8 {
                    out.extend_from_slice(b" SMTPUTF8");
                }
            }
            Command::Rcpt { forward_path } => {
                out.extend_from_slice(b"RCPT TO:<");
                match forward_path {
                    ForwardPath::Postmaster => out.extend_from_slice(b"Postmaster"),
                    ForwardPath::Mailbox(mailbox) => out.extend_from_slice(mailbox.as_bytes()),
                }
                out.push(b'>');
            }
            Command::Data => out.extend_from_slice(b"DATA"),
            Command::Bdat { chunk_bytes, last } => {
                let _ = write!(out, "BDAT {chunk_bytes}");
                if *last {
                    out.extend_from_slice(b" LAST");
                }
            }
            Command::Rset => out.extend_from_slice(b"RSET"),
            Command::Noop => out.extend_from_slice(b"NOOP"),
            Command::Quit => out.extend_from_slice(b"QUIT"),
            Command::Vrfy => out.extend_from_slice(b"VRFY postmaster"),
            Command::Help => out.extend_from_slice(b"HELP"),
            Command::StartTls => out.extend_from_slice(b"STARTTLS"),
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The domain part of a mailbox returned by this parser: everything after the last `@`
/// (a quoted local part may contain `@`, a domain never does).
pub fn domain_of(mailbox: &str) -> &str {
    match mailbox.rfind('@') {
        Some(at_idx) => &mailbox[at_idx + 1..],
        None => "",
    }
}

fn trim_end(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn trim_start(mut bytes: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

fn verb_of(word: &[u8]) -> Option<Verb> {
    if word.len() > VERB_BYTES_MAX {
        return None;
    }
    let mut upper = [0u8; VERB_BYTES_MAX];
    for (dst, src) in upper.iter_mut().zip(word) {
        *dst = src.to_ascii_uppercase();
    }
    Some(match &upper[..word.len()] {
        b"HELO" => Verb::Helo,
        b"EHLO" => Verb::Ehlo,
        b"MAIL" => Verb::Mail,
        b"RCPT" => Verb::Rcpt,
        b"DATA" => Verb::Data,
        b"BDAT" => Verb::Bdat,
        b"RSET" => Verb::Rset,
        b"NOOP" => Verb::Noop,
        b"QUIT" => Verb::Quit,
        b"VRFY" => Verb::Vrfy,
        b"HELP" => Verb::Help,
        b"STARTTLS" => Verb::StartTls,
        _ => return None,
    })
}

/// HELO/EHLO take one word of printable ASCII. We do not insist on a valid domain (many
/// clients send bare host names or `[ip]`), but the word goes into the Received header, so
/// it must be short and free of spaces and control characters.
fn parse_helo_domain(arg: &[u8]) -> Option<&str> {
    if arg.is_empty() || arg.len() > HELO_BYTES_MAX || !arg.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    std::str::from_utf8(arg).ok()
}

fn parse_bdat(arg: &[u8]) -> Option<Command<'static>> {
    let mut words = arg.split(|&b| b == b' ').filter(|word| !word.is_empty());
    let chunk_bytes = parse_number(words.next()?)?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return None,
    };
    if words.next().is_some() {
        return None;
    }
    Some(Command::Bdat { chunk_bytes, last })
}

fn parse_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty()
        || digits.len() > NUMBER_DIGITS_MAX
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// A SIZE= value: any number of digits, saturating at `u64::MAX`. A huge SIZE is
/// well-formed and simply too big (`552`), not a syntax error.
fn parse_size(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Strips the case-insensitive `FROM:` / `TO:` prefix and the spaces some clients put
/// after the colon.
fn strip_keyword<'a>(arg: &'a [u8], keyword: &[u8]) -> Option<&'a [u8]> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    Some(trim_start(&arg[keyword.len()..]))
}

fn parse_mail(arg: &[u8]) -> Result<Command<'_>, Error> {
    let rest = strip_keyword(arg, b"FROM:").ok_or(Error::Syntax(Verb::Mail))?;
    let rest = std::str::from_utf8(rest).map_err(|_| Error::InvalidUtf8)?;
    let (path, rest) = parse_path(rest).map_err(|error| match error {
        PathError::NotAngled => Error::Syntax(Verb::Mail),
        PathError::BadAddress => Error::BadSender,
    })?;
    let reverse_path = match path {
        Path::Null => "",
        Path::Mailbox(mailbox) => mailbox,
        Path::Postmaster => return Err(Error::BadSender),
    };
    let mut params = MailParams::default();
    let mut seen_body = false;
    for param in params_of(rest) {
        let (keyword, value) = param.ok_or(Error::Syntax(Verb::Mail))?;
        if keyword.eq_ignore_ascii_case("SIZE") {
            let size_bytes = value.and_then(|value| parse_size(value.as_bytes()));
            if params.size_bytes.is_some() || size_bytes.is_none() {
                return Err(Error::Syntax(Verb::Mail));
            }
            params.size_bytes = size_bytes;
        } else if keyword.eq_ignore_ascii_case("BODY") {
            let Some(value) = value else {
                return Err(Error::Syntax(Verb::Mail));
            };
            if seen_body {
                return Err(Error::Syntax(Verb::Mail));
            }
            seen_body = true;
            params.body = Some(if value.eq_ignore_ascii_case("7BIT") {
                BodyType::SevenBit
            } else if value.eq_ignore_ascii_case("8BITMIME") {
                BodyType::EightBitMime
            } else {
                // BINARYMIME and anything else: well-formed, but not something we offer.
                return Err(Error::ParamNotSupported);
            });
        } else if keyword.eq_ignore_ascii_case("SMTPUTF8") {
            if params.smtputf8 || value.is_some() {
                return Err(Error::Syntax(Verb::Mail));
            }
            params.smtputf8 = true;
        } else {
            return Err(Error::ParamNotSupported);
        }
    }
    Ok(Command::Mail {
        reverse_path,
        params,
    })
}

fn parse_rcpt(arg: &[u8]) -> Result<Command<'_>, Error> {
    let rest = strip_keyword(arg, b"TO:").ok_or(Error::Syntax(Verb::Rcpt))?;
    let rest = std::str::from_utf8(rest).map_err(|_| Error::InvalidUtf8)?;
    let (path, rest) = parse_path(rest).map_err(|error| match error {
        PathError::NotAngled => Error::Syntax(Verb::Rcpt),
        PathError::BadAddress => Error::BadRecipient,
    })?;
    let forward_path = match path {
        Path::Null => return Err(Error::BadRecipient),
        Path::Postmaster => ForwardPath::Postmaster,
        Path::Mailbox(mailbox) => ForwardPath::Mailbox(mailbox),
    };
    // We offer no RCPT parameters (no DSN), so any well-formed one is "not implemented".
    if let Some(param) = params_of(rest).next() {
        return Err(match param {
            Some(_) => Error::ParamNotSupported,
            None => Error::Syntax(Verb::Rcpt),
        });
    }
    Ok(Command::Rcpt { forward_path })
}

/// The esmtp-params after a path: `None` items are malformed.
/// `rest` must be empty or start with a space, else the whole thing is one malformed item.
fn params_of(rest: &str) -> impl Iterator<Item = Option<(&str, Option<&str>)>> {
    let glued = !rest.is_empty() && !rest.starts_with(' ');
    let glued_error = glued.then_some(None);
    let words = rest
        .split(' ')
        .filter(move |word| !glued && !word.is_empty());
    glued_error.into_iter().chain(words.map(|word| {
        let (keyword, value) = match word.split_once('=') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (word, None),
        };
        let keyword_ok = keyword
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
            && keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        // esmtp-value: one or more of %d33-60 / %d62-126, or UTF-8 (RFC 6531).
        let value_ok = value.is_none_or(|value| {
            !value.is_empty()
                && value
                    .bytes()
                    .all(|b| (b.is_ascii_graphic() && b != b'=') || b >= 0x80)
        });
        (keyword_ok && value_ok).then_some((keyword, value))
    }))
}

enum Path<'a> {
    Null,
    Postmaster,
    Mailbox(&'a str),
}

enum PathError {
    /// Does not start with `<`: a command syntax error rather than an address error.
    NotAngled,
    BadAddress,
}

/// Parses `<path>` at the start of `text`; returns the path and what follows the `>`.
fn parse_path(text: &str) -> Result<(Path<'_>, &str), PathError> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'<') {
        return Err(PathError::NotAngled);
    }
    if bytes.get(1) == Some(&b'>') {
        return Ok((Path::Null, &text[2..]));
    }
    const POSTMASTER: &[u8] = b"postmaster";
    if bytes
        .get(1..=POSTMASTER.len())
        .is_some_and(|word| word.eq_ignore_ascii_case(POSTMASTER))
        && bytes.get(POSTMASTER.len() + 1) == Some(&b'>')
    {
        return Ok((Path::Postmaster, &text[POSTMASTER.len() + 2..]));
    }
    let end_idx = parse_angled_mailbox(bytes).ok_or(PathError::BadAddress)?;
    let (mailbox_start_idx, close_idx) = end_idx;
    // Both indexes point at ASCII bytes, so they are char boundaries.
    Ok((
        Path::Mailbox(&text[mailbox_start_idx..close_idx]),
        &text[close_idx + 1..],
    ))
}

/// Checks `<[route:]mailbox>` at the start of `bytes` (which starts with `<`); returns
/// where the mailbox starts and where the closing `>` is.
fn parse_angled_mailbox(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut idx = 1;
    // A-d-l ":" (source route): parsed and dropped (RFC 5321 4.1.2, C.).
    if bytes.get(idx) == Some(&b'@') {
        loop {
            idx = parse_domain(bytes, idx + 1)?;
            match bytes.get(idx) {
                Some(b',') if bytes.get(idx + 1) == Some(&b'@') => idx += 1,
                Some(b':') => {
                    idx += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    let mailbox_start_idx = idx;
    idx = if bytes.get(idx) == Some(&b'"') {
        parse_quoted_string(bytes, idx)?
    } else {
        parse_dot_string(bytes, idx)?
    };
    if idx - mailbox_start_idx > LOCAL_PART_BYTES_MAX || bytes.get(idx) != Some(&b'@') {
        return None;
    }
    idx = if bytes.get(idx + 1) == Some(&b'[') {
        parse_address_literal(bytes, idx + 1)?
    } else {
        parse_domain(bytes, idx + 1)?
    };
    if bytes.get(idx) != Some(&b'>') || idx + 1 > PATH_BYTES_MAX {
        return None;
    }
    Some((mailbox_start_idx, idx))
}

/// atext (RFC 5322 3.2.3) plus UTF-8 bytes (RFC 6531 3.3).
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// Dot-string: atoms separated by single dots; returns the index after it.
fn parse_dot_string(bytes: &[u8], start_idx: usize) -> Option<usize> {
    let mut idx = start_idx;
    loop {
        let atom_start_idx = idx;
        while bytes.get(idx).is_some_and(|&b| is_atext(b)) {
            idx += 1;
        }
        if idx == atom_start_idx {
            return None;
        }
        if bytes.get(idx) == Some(&b'.') {
            idx += 1;
        } else {
            return Some(idx);
        }
    }
}

/// Quoted-string with quoted-pairs (RFC 5321 4.1.2, RFC 6531 3.3); `bytes[start_idx]` is
/// the opening quote; returns the index after the closing quote.
fn parse_quoted_string(bytes: &[u8], start_idx: usize) -> Option<usize> {
    let mut idx = start_idx + 1;
    loop {
        match *bytes.get(idx)? {
            b'"' => return Some(idx + 1),
            b'\\' => {
                let escaped = *bytes.get(idx + 1)?;
                if !(b' '..=b'~').contains(&escaped) {
                    return None;
                }
                idx += 2;
            }
            b' ' | b'!' | b'#'..=b'[' | b']'..=b'~' | 0x80..=0xff => idx += 1,
            _ => return None,
        }
    }
}

/// Domain: LDH labels (UTF-8 allowed, RFC 6531) separated by dots; returns the index after it.
fn parse_domain(bytes: &[u8], start_idx: usize) -> Option<usize> {
    let mut idx = start_idx;
    loop {
        let label_start_idx = idx;
        while bytes
            .get(idx)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        {
            idx += 1;
        }
        let label = &bytes[label_start_idx..idx];
        if label.is_empty()
            || label.len() > LABEL_BYTES_MAX
            || label.first() == Some(&b'-')
            || label.last() == Some(&b'-')
        {
            return None;
        }
        if bytes.get(idx) == Some(&b'.') {
            idx += 1;
        } else {
            break;
        }
    }
    (idx - start_idx <= DOMAIN_BYTES_MAX).then_some(idx)
}

/// `[1.2.3.4]`, `[IPv6:...]` or a general address literal `[tag:content]`
/// (RFC 5321 4.1.3); `bytes[start_idx]` is `[`; returns the index after `]`.
fn parse_address_literal(bytes: &[u8], start_idx: usize) -> Option<usize> {
    let content_start_idx = start_idx + 1;
    let close_idx = content_start_idx + memchr(b']', bytes.get(content_start_idx..)?)?;
    let content = &bytes[content_start_idx..close_idx];
    if content.len() + 2 > DOMAIN_BYTES_MAX {
        return None;
    }
    let content_text = std::str::from_utf8(content).ok()?;
    let valid = if let Some(ipv6) = content_text
        .get(..5)
        .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
        .map(|_| &content_text[5..])
    {
        ipv6.parse::<Ipv6Addr>().is_ok()
    } else if content_text.parse::<Ipv4Addr>().is_ok() {
        true
    } else if let Some((tag, dcontent)) = content_text.split_once(':') {
        // General-address-literal: Standardized-tag ":" 1*dcntnt.
        let tag = tag.as_bytes();
        !tag.is_empty()
            && tag.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            && tag.last() != Some(&b'-')
            && !dcontent.is_empty()
            && dcontent.bytes().all(|b| matches!(b, 33..=90 | 94..=126))
    } else {
        false
    };
    valid.then_some(close_idx + 1)
}

#[cfg(test)]
mod tests {
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
}
