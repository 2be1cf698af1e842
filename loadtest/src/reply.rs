//! SMTP reply parsing (RFC 5321 4.2): bytes in, one complete reply out.
//!
//! No IO and no allocation: the event loop hands over whatever it has read so far and gets
//! back either a complete reply (with how many bytes it used) or "need more bytes".
//! Multi-line replies (`250-...` continued by `250 ...`) are one reply.
//! Bare `\n` line ends are tolerated, because being strict here would only turn a server's
//! sloppiness into a load-generator failure that hides the numbers we came for.

/// Longest reply line we accept (RFC 5321 4.5.3.1.5 says 512 octets; servers exceed it in
/// EHLO lines, so allow more before calling it a protocol error).
pub const REPLY_LINE_BYTES_MAX: usize = 4096;

/// Most lines in one multi-line reply (EHLO lists a few dozen at most).
pub const REPLY_LINES_MAX: usize = 256;

/// One complete SMTP reply, borrowed from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply<'a> {
    /// The three-digit reply code, e.g. 250.
    pub code: u16,
    /// The enhanced status code of the last line (RFC 3463), e.g. `4.3.0`, if present.
    pub enhanced: Option<&'a [u8]>,
    /// The whole reply, every line, with line ends.
    pub raw: &'a [u8],
}

/// Why bytes could not be parsed as a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// A line does not start with three digits followed by ' ', '-' or the line end.
    Malformed,
    /// A line is longer than [`REPLY_LINE_BYTES_MAX`] or there are more than [`REPLY_LINES_MAX`] lines.
    TooLong,
    /// The lines of a multi-line reply carry different codes.
    CodeChanged,
}

/// The outcome of [`parse_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A reply that used the first `len` bytes of the input.
    Complete { reply: Reply<'a>, len: usize },
    /// The input holds only the start of a reply.
    Incomplete,
}

impl Reply<'_> {
    /// True for 2xx replies.
    pub fn is_positive_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// A grouping key for error counts: `"451 4.3.0"`, or `"451"` without an enhanced code.
    pub fn code_key(&self) -> String {
        match self.enhanced {
            Some(enhanced) => format!("{} {}", self.code, String::from_utf8_lossy(enhanced)),
            None => self.code.to_string(),
        }
    }
}

/// Parses the first complete reply in `input`.
///
/// # Errors
/// [`ReplyError`] when the bytes cannot be an SMTP reply; the connection should then be dropped.
pub fn parse_reply(input: &[u8]) -> Result<Parsed<'_>, ReplyError> {
    let mut line_start = 0;
    let mut code_first: Option<u16> = None;
    for _ in 0..REPLY_LINES_MAX {
        let rest = &input[line_start..];
        let Some(newline_idx) = memchr::memchr(b'\n', rest) else {
            // Judge what we have so far so that garbage is reported without waiting for a newline.
            if rest.len() > REPLY_LINE_BYTES_MAX {
                return Err(ReplyError::TooLong);
            }
            check_prefix(rest)?;
            return Ok(Parsed::Incomplete);
        };
        if newline_idx > REPLY_LINE_BYTES_MAX {
            return Err(ReplyError::TooLong);
        }
        let mut line = &rest[..newline_idx];
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        let (code, last) = parse_line_head(line)?;
        match code_first {
            None => code_first = Some(code),
            Some(first) if first != code => return Err(ReplyError::CodeChanged),
            Some(_) => {}
        }
        let line_end = line_start + newline_idx + 1;
        if last {
            let text = line.get(4..).unwrap_or(&[]);
            let reply = Reply {
                code,
                enhanced: enhanced_code(code, text),
                raw: &input[..line_end],
            };
            return Ok(Parsed::Complete {
                reply,
                len: line_end,
            });
        }
        line_start = line_end;
    }
    Err(ReplyError::TooLong)
}

/// Capabilities of interest from an EHLO reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 3030 (BDAT).
    pub chunking: bool,
    /// RFC 3207.
    pub starttls: bool,
}

/// Reads the capability keywords from the lines after the first of an EHLO reply.
pub fn capabilities(ehlo_reply: &[u8]) -> Capabilities {
    let mut caps = Capabilities::default();
    for line in ehlo_reply.split(|&b| b == b'\n').skip(1) {
        let text = line.get(4..).unwrap_or(&[]);
        let keyword_end = text
            .iter()
            .position(|&b| b == b' ' || b == b'\r')
            .unwrap_or(text.len());
        let keyword = &text[..keyword_end];
        if keyword.eq_ignore_ascii_case(b"PIPELINING") {
            caps.pipelining = true;
        } else if keyword.eq_ignore_ascii_case(b"CHUNKING") {
            caps.chunking = true;
        } else if keyword.eq_ignore_ascii_case(b"STARTTLS") {
            caps.starttls = true;
        }
    }
    caps
}

/// Checks the start of an unfinished line, so that a peer that is not an SMTP server is
/// caught at once rather than after a timeout.
fn check_prefix(partial_line: &[u8]) -> Result<(), ReplyError> {
    for (idx, &byte) in partial_line.iter().enumerate().take(4) {
        let ok = if idx < 3 {
            byte.is_ascii_digit()
        } else {
            byte == b' ' || byte == b'-' || byte == b'\r'
        };
        if !ok {
            return Err(ReplyError::Malformed);
        }
    }
    Ok(())
}

/// Returns the code and whether this is the last line of the reply.
fn parse_line_head(line: &[u8]) -> Result<(u16, bool), ReplyError> {
    let [d0, d1, d2, rest @ ..] = line else {
        return Err(ReplyError::Malformed);
    };
    let digits = d0.is_ascii_digit() && d1.is_ascii_digit() && d2.is_ascii_digit();
    // Reply codes start with 2 to 5 (RFC 5321 4.2.1).
    if !(digits && (b'2'..=b'5').contains(d0)) {
        return Err(ReplyError::Malformed);
    }
    let code = u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0');
    match rest.first() {
        None | Some(b' ') => Ok((code, true)),
        Some(b'-') => Ok((code, false)),
        Some(_) => Err(ReplyError::Malformed),
    }
}

/// The RFC 3463 enhanced code at the start of `text` when its class matches the reply's.
fn enhanced_code(code: u16, text: &[u8]) -> Option<&[u8]> {
    let end = text.iter().position(|&b| b == b' ').unwrap_or(text.len());
    let candidate = &text[..end];
    let mut parts = candidate.split(|&b| b == b'.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let well_formed = parts.next().is_none()
        && class.len() == 1
        && u16::from(class[0]).wrapping_sub(u16::from(b'0')) == code / 100
        && (1..=3).contains(&subject.len())
        && (1..=3).contains(&detail.len())
        && subject.iter().chain(detail).all(u8::is_ascii_digit);
    well_formed.then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input, expected code, expected enhanced code, expected consumed length).
    const COMPLETE_CASES: &[(&[u8], u16, Option<&str>, usize)] = &[
        (b"250 OK\r\n", 250, None, 8),
        (b"250 2.0.0 Ok: queued\r\n", 250, Some("2.0.0"), 22),
        (
            b"451 4.3.0 Try again later\r\nextra",
            451,
            Some("4.3.0"),
            27,
        ),
        (b"354 End data with <CR><LF>.<CR><LF>\r\n", 354, None, 37),
        (
            b"250-mx.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
            250,
            None,
            43,
        ),
        (b"220\r\n", 220, None, 5),
        (b"250 ok\n", 250, None, 7),
        // Class mismatch: "2.0.0" on a 5xx reply is not taken as the enhanced code.
        (b"550 2.0.0 odd\r\n", 550, None, 15),
        (b"550 5.7.1 relay denied\r\n", 550, Some("5.7.1"), 24),
        (b"421 4.4.2 idle\r\n", 421, Some("4.4.2"), 16),
    ];

    #[test]
    fn complete_replies() {
        for &(input, code, enhanced, len) in COMPLETE_CASES {
            let parsed = parse_reply(input).unwrap_or_else(|e| panic!("{input:?}: {e:?}"));
            let Parsed::Complete {
                reply,
                len: got_len,
            } = parsed
            else {
                panic!("{input:?}: incomplete");
            };
            assert_eq!(reply.code, code, "{input:?}");
            assert_eq!(
                reply.enhanced.map(|e| std::str::from_utf8(e).unwrap()),
                enhanced,
                "{input:?}"
            );
            assert_eq!(got_len, len, "{input:?}");
        }
    }

    #[test]
    fn every_prefix_is_incomplete_until_the_end() {
        for &(input, _, _, len) in COMPLETE_CASES {
            for split in 0..len {
                assert_eq!(
                    parse_reply(&input[..split]),
                    Ok(Parsed::Incomplete),
                    "{input:?} at {split}"
                );
            }
        }
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], ReplyError)] = &[
            (b"HTTP/1.1 400 Bad\r\n", ReplyError::Malformed),
            (b"HTT", ReplyError::Malformed),
            (b"25x ok\r\n", ReplyError::Malformed),
            (b"250x\r\n", ReplyError::Malformed),
            (b"650 nope\r\n", ReplyError::Malformed),
            (b"\r\n", ReplyError::Malformed),
            (b"250-a\r\n251 b\r\n", ReplyError::CodeChanged),
        ];
        for &(input, expected) in cases {
            assert_eq!(parse_reply(input), Err(expected), "{input:?}");
        }
        let long = vec![b'2'; REPLY_LINE_BYTES_MAX + 10];
        assert_eq!(parse_reply(&long), Err(ReplyError::TooLong));
        let mut long_line = b"250 ".to_vec();
        long_line.extend(std::iter::repeat_n(b'a', REPLY_LINE_BYTES_MAX + 10));
        assert_eq!(parse_reply(&long_line), Err(ReplyError::TooLong));
        let many: Vec<u8> = b"250-x\r\n".repeat(REPLY_LINES_MAX + 1);
        assert_eq!(parse_reply(&many), Err(ReplyError::TooLong));
    }

    #[test]
    fn code_keys() {
        let cases: &[(&[u8], &str)] = &[
            (b"451 4.3.0 later\r\n", "451 4.3.0"),
            (b"554 no\r\n", "554"),
        ];
        for &(input, key) in cases {
            let Ok(Parsed::Complete { reply, .. }) = parse_reply(input) else {
                panic!("{input:?}")
            };
            assert_eq!(reply.code_key(), key);
        }
    }

    #[test]
    fn ehlo_capabilities() {
        let cases: &[(&[u8], Capabilities)] = &[
            (
                b"250-mx\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250 CHUNKING\r\n",
                Capabilities {
                    pipelining: true,
                    chunking: true,
                    starttls: true,
                },
            ),
            (
                b"250-mx\r\n250 pipelining\r\n",
                Capabilities {
                    pipelining: true,
                    ..Capabilities::default()
                },
            ),
            // The greeting line's text is a host name, never a keyword.
            (b"250 PIPELINING\r\n", Capabilities::default()),
            (b"250-mx\r\n250 PIPELININGX\r\n", Capabilities::default()),
        ];
        for &(input, expected) in cases {
            assert_eq!(capabilities(input), expected, "{input:?}");
        }
    }
}
