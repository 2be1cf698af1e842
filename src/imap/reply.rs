//! Response text and the writers for IMAP's string forms.
//!
//! Responses are written by hand rather than built as `imap_types` values: message data
//! (header values, bodies) is arbitrary bytes, and building validated types for it would
//! copy every body. The rules that matter are kept here in one place: a string goes out
//! quoted only when every byte may appear in a quoted string, otherwise as a literal; a
//! literal never carries NUL (RFC 3501 4.3). The tests parse what we write with
//! imap-codec's response parser.

/// Longest string sent in quoted form; longer ones go as literals, which clients read
/// without scanning for escapes.
pub const QUOTED_BYTES_MAX: usize = 1024;

/// What a NUL byte of message data is sent as. RFC 3501 4.3 forbids NUL in a literal and
/// BINARY (RFC 3516) is not offered; 0x80 keeps every size and offset unchanged (Dovecot
/// does the same).
pub const NUL_REPLACEMENT: u8 = 0x80;

/// Capabilities offered in every state.
pub const CAPABILITIES_ALWAYS: &str = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE \
                                       UNSELECT UIDPLUS CHILDREN STATUS=SIZE";

/// The flags a message can have here (and the only ones kept).
pub const FLAGS_SUPPORTED: &str = "(\\Seen \\Deleted)";

// The fixed response lines: every constant text the session sends, in one place so the
// tests can name them.

/// After `ERRORS_MAX` bad commands.
pub const BYE_TOO_MANY_ERRORS: &[u8] = b"* BYE Too many invalid commands\r\n";
/// After `LOGIN_FAILURES_MAX` refused logins.
pub const BYE_TOO_MANY_LOGIN_FAILURES: &[u8] = b"* BYE Too many failed logins\r\n";
/// A command over `COMMAND_BYTES_MAX`, or a line over `LINE_BYTES_MAX`.
pub const BYE_COMMAND_TOO_LONG: &[u8] = b"* BYE Command too long\r\n";
/// A non-synchronizing literal over `LITERAL_BYTES_MAX` (RFC 7888 4).
pub const BYE_LITERAL_TOO_BIG: &[u8] = b"* BYE Literal too big\r\n";
/// The store's UIDVALIDITY changed under a selected mailbox (RFC 3501 2.3.1.1): the
/// client must start over, and a new connection is the plainest way to say it.
pub const BYE_UIDVALIDITY_CHANGED: &[u8] =
    b"* BYE [UNAVAILABLE] The inbox was reset (UIDVALIDITY changed), please reconnect\r\n";
/// Invites a synchronizing literal.
pub const CONTINUE_LITERAL: &[u8] = b"+ Ready for literal\r\n";
/// IDLE began (RFC 2177).
pub const CONTINUE_IDLE: &[u8] = b"+ idling\r\n";
/// Asks for the SASL PLAIN response: PLAIN sends no challenge, so the text is empty.
pub const CONTINUE_AUTHENTICATE: &[u8] = b"+ \r\n";
/// RFC 2971: our name only (no version: it would help attackers more than clients).
pub const ID_RESPONSE: &[u8] = b"* ID (\"name\" \"Mayfly\")\r\n";
/// RFC 2342: one personal namespace, no prefix, `/` as the delimiter.
pub const NAMESPACE_RESPONSE: &[u8] = b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n";
/// RFC 5161: nothing of what the client asked for is enabled.
pub const ENABLED_NOTHING: &[u8] = b"* ENABLED\r\n";

/// Appends `tag SP status [SP "[" code "]"] SP text CRLF`. `tag` is `*` when the command
/// had none we could read.
pub fn tagged(out: &mut Vec<u8>, tag: &str, status: &str, code: Option<&str>, text: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_bytes());
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.as_bytes());
        out.push(b']');
    }
    out.push(b' ');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `tag OK text`.
pub fn ok(out: &mut Vec<u8>, tag: &str, text: &str) {
    tagged(out, tag, "OK", None, text);
}

/// `tag NO text`, optionally with a response code.
pub fn no(out: &mut Vec<u8>, tag: &str, code: Option<&str>, text: &str) {
    tagged(out, tag, "NO", code, text);
}

/// `tag BAD text`.
pub fn bad(out: &mut Vec<u8>, tag: &str, text: &str) {
    tagged(out, tag, "BAD", None, text);
}

/// The capability list for a session in this state (no trailing CRLF).
pub fn capabilities(out: &mut Vec<u8>, before_login: bool, starttls: bool, login_disabled: bool) {
    out.extend_from_slice(CAPABILITIES_ALWAYS.as_bytes());
    if !before_login {
        return;
    }
    if starttls {
        out.extend_from_slice(b" STARTTLS");
    }
    if login_disabled {
        out.extend_from_slice(b" LOGINDISABLED");
    } else {
        out.extend_from_slice(b" AUTH=PLAIN");
    }
}

/// Whether `bytes` can go out as a quoted string: printable ASCII only (no CR, LF, NUL or
/// 8-bit bytes), short enough.
fn quotable(bytes: &[u8]) -> bool {
    bytes.len() <= QUOTED_BYTES_MAX && bytes.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// Appends `bytes` as an IMAP string: quoted when possible, a literal otherwise.
pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    if quotable(bytes) {
        out.push(b'"');
        for &byte in bytes {
            if byte == b'"' || byte == b'\\' {
                out.push(b'\\');
            }
            out.push(byte);
        }
        out.push(b'"');
    } else {
        literal(out, bytes);
    }
}

/// Appends `bytes` as a literal, NUL bytes replaced (see `NUL_REPLACEMENT`).
pub fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'{');
    push_number(out, bytes.len() as u64);
    out.extend_from_slice(b"}\r\n");
    let start = out.len();
    out.extend_from_slice(bytes);
    if memchr::memchr(0, bytes).is_some() {
        for byte in &mut out[start..] {
            if *byte == 0 {
                *byte = NUL_REPLACEMENT;
            }
        }
    }
}

/// Appends an nstring: `NIL` for `None`.
pub fn nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => string(out, bytes),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Appends an astring: a bare atom when every byte is an ASTRING-CHAR, else a string.
/// Used to echo header field names in `BODY[HEADER.FIELDS (...)]`, which clients match
/// against what they asked for.
pub fn astring(out: &mut Vec<u8>, bytes: &[u8]) {
    let is_atom = !bytes.is_empty()
        && bytes.iter().all(|&b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        });
    if is_atom {
        out.extend_from_slice(bytes);
    } else {
        string(out, bytes);
    }
}

/// Appends a decimal number.
pub fn push_number(out: &mut Vec<u8>, number: u64) {
    let mut digits = [0u8; 20];
    let mut idx = digits.len();
    let mut rest = number;
    loop {
        idx -= 1;
        digits[idx] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[idx..]);
}

/// Appends a flag list, e.g. `(\Seen \Deleted)`.
pub fn flags(out: &mut Vec<u8>, seen: bool, deleted: bool) {
    out.push(b'(');
    if seen {
        out.extend_from_slice(b"\\Seen");
    }
    if deleted {
        if seen {
            out.push(b' ');
        }
        out.extend_from_slice(b"\\Deleted");
    }
    out.push(b')');
}

/// Appends an INTERNALDATE (`"17-Jul-1996 02:44:25 +0000"`) for Unix milliseconds, in UTC.
pub fn internal_date(out: &mut Vec<u8>, unix_ms: u64) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let (year, month, day) = civil_from_days(days);
    let secs_of_day = secs % 86_400;
    let text = format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    );
    out.extend_from_slice(text.as_bytes());
}

pub use crate::clock::{civil_from_days, days_from_civil};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_or_literal() {
        let table: &[(&[u8], &[u8])] = &[
            (b"", b"\"\""),
            (b"abc", b"\"abc\""),
            (b"a\"b\\c", b"\"a\\\"b\\\\c\""),
            (b"a\r\nb", b"{4}\r\na\r\nb"),
            ("é".as_bytes(), b"{2}\r\n\xc3\xa9"),
            (b"a\0b", b"{3}\r\na\x80b"),
        ];
        for (input, expected) in table {
            let mut out = Vec::new();
            string(&mut out, input);
            assert_eq!(out, *expected, "{:?}", String::from_utf8_lossy(input));
        }
        let mut out = Vec::new();
        string(&mut out, &vec![b'x'; QUOTED_BYTES_MAX + 1]);
        assert!(out.starts_with(b"{1025}\r\n"));
    }

    #[test]
    fn dates_round_trip() {
        for days in [-1_000_000, -1, 0, 1, 59, 10_957, 19_782, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        let mut out = Vec::new();
        internal_date(&mut out, 1_709_210_096_000);
        assert_eq!(out, b"\"29-Feb-2024 12:34:56 +0000\"");
    }
}
