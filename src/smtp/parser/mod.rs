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
    // The literal stands where a domain would, brackets included.
    if content.len() + b"[]".len() > DOMAIN_BYTES_MAX {
        return None;
    }
    let content_text = std::str::from_utf8(content).ok()?;
    const IPV6_TAG: &str = "IPv6:";
    let valid = if let Some(ipv6) = content_text
        .get(..IPV6_TAG.len())
        .filter(|tag| tag.eq_ignore_ascii_case(IPV6_TAG))
        .map(|_| &content_text[IPV6_TAG.len()..])
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
            // dcontent: %d33-90 / %d94-126, printable ASCII but `[`, `\` and `]`.
            && dcontent.bytes().all(|b| matches!(b, b'!'..=b'Z' | b'^'..=b'~'))
    } else {
        false
    };
    valid.then_some(close_idx + 1)
}

#[cfg(test)]
mod tests;
