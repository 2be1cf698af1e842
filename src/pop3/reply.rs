//! Every POP3 reply Mayfly sends, as a constant or a small function that writes it.
//!
//! Keeping them in one place keeps the texts consistent and lets tests name them.
//!
//! Response codes (RFC 2449 8, RFC 3206): a bracketed code follows `-ERR` only where a
//! client can act on it: `[AUTH]` when the credentials (or the connection's lack of TLS)
//! are the reason a login failed, `[SYS/TEMP]` when the server is, so trying again later
//! can work, `[IN-USE]` when another session holds the maildrop. Syntax and sequence
//! errors carry none. Every reply is one line ending in CRLF, except the multi-line ones
//! (CAPA, LIST, UIDL, AUTH with no mechanism, a retrieved message), which end with a
//! lone `.` line.

use std::io::Write;

use crate::store::MessageId;

/// Ends every multi-line reply (RFC 1939 3).
pub const END: &[u8] = b".\r\n";

/// `+OK` to NOOP.
pub const OK: &[u8] = b"+OK\r\n";
/// `+OK` to USER: RFC 1939 lets us say whether the mailbox exists; we never do, so
/// USER cannot be used to probe for addresses.
pub const USER_OK: &[u8] = b"+OK Send PASS\r\n";
/// The empty server challenge that asks for the SASL PLAIN response (RFC 5034 4).
pub const SASL_CONTINUE: &[u8] = b"+ \r\n";
/// `+OK` to AUTH with no mechanism: the mechanisms we offer, as a multi-line reply.
pub const SASL_MECHANISMS: &[u8] = b"+OK Supported SASL mechanisms follow\r\nPLAIN\r\n.\r\n";
/// `+OK` to STLS: the TLS handshake starts next (RFC 2595 4).
pub const STLS_READY: &[u8] = b"+OK Begin TLS negotiation\r\n";
/// First line of the CAPA reply.
pub const CAPA_HEADER: &[u8] = b"+OK Capability list follows\r\n";
/// First line of the UIDL reply without an argument.
pub const UIDL_HEADER: &[u8] = b"+OK Unique-ID listing follows\r\n";

/// A command word we do not know (APOP included: we keep no shared secrets).
pub const UNKNOWN_COMMAND: &[u8] = b"-ERR unknown command\r\n";
/// A line longer than `COMMAND_LINE_BYTES_MAX`, answered when its LF arrives.
pub const LINE_TOO_LONG: &[u8] = b"-ERR line too long\r\n";
/// A control character (a bare CR, NUL, TAB...) inside a command line.
pub const CONTROL_CHARACTER: &[u8] = b"-ERR control character in command line\r\n";
/// A command line that is not UTF-8.
pub const INVALID_UTF8: &[u8] = b"-ERR invalid UTF-8 in command line\r\n";
/// The error that ends the session (`ERRORS_MAX`); it replaces the reply the last bad
/// command would have had, so every command still gets exactly one reply.
pub const TOO_MANY_ERRORS: &[u8] = b"-ERR too many errors\r\n";
/// A TRANSACTION command before login.
pub const NEED_LOGIN: &[u8] = b"-ERR command only valid after login\r\n";
/// An AUTHORIZATION command (USER, PASS, AUTH, STLS) after login.
pub const ALREADY_LOGGED_IN: &[u8] = b"-ERR command not valid after login\r\n";
/// A command that takes no argument got one, or one that takes some got too many.
pub const TOO_MANY_ARGUMENTS: &[u8] = b"-ERR too many arguments\r\n";

/// USER, PASS or AUTH without TLS while the server requires it (RFC 2595 4; the `[AUTH]`
/// code of RFC 3206: the client should not retry these credentials as they are, here).
pub const PLAINTEXT_DISALLOWED: &[u8] =
    b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n";
/// USER without a name.
pub const USER_NEEDS_NAME: &[u8] = b"-ERR USER needs a name\r\n";
/// PASS without a password.
pub const PASS_NEEDS_PASSWORD: &[u8] = b"-ERR PASS needs a password\r\n";
/// PASS without a USER before it (or after a failed login, which forgets the USER).
pub const NEED_USER: &[u8] = b"-ERR send USER first\r\n";
/// A name that is no address any inbox could have (`address::InboxKey` refuses it).
pub const NO_SUCH_INBOX: &[u8] = b"-ERR [AUTH] name is not a valid address\r\n";
/// The caller refused the credentials (`LoginRefused::Invalid`).
pub const LOGIN_INVALID: &[u8] = b"-ERR [AUTH] Invalid login\r\n";
/// The caller cannot check credentials now (`LoginRefused::TryLater`).
pub const LOGIN_TRY_LATER: &[u8] = b"-ERR [SYS/TEMP] Login not possible now, try again later\r\n";
/// Another session holds the maildrop (`LoginRefused::InUse`, the `IN-USE` code of RFC 2449 8.1).
pub const LOGIN_IN_USE: &[u8] = b"-ERR [IN-USE] Maildrop already in use\r\n";
/// AUTH with a mechanism other than PLAIN.
pub const UNSUPPORTED_MECHANISM: &[u8] =
    b"-ERR unsupported SASL mechanism, only PLAIN is offered\r\n";
/// The client answered the SASL challenge with `*` (RFC 5034 4).
pub const SASL_CANCELLED: &[u8] = b"-ERR authentication cancelled\r\n";
/// A SASL response that is not canonical base64 (RFC 5034 4: must be rejected).
pub const SASL_BAD_BASE64: &[u8] = b"-ERR invalid base64 in SASL response\r\n";
/// A SASL PLAIN message that is not `authzid NUL authcid NUL passwd` (RFC 4616 2) with
/// a name and a password in UTF-8 without control characters.
pub const SASL_BAD_PLAIN: &[u8] = b"-ERR malformed SASL PLAIN response\r\n";
/// A SASL PLAIN authorization identity that names someone else: we do not let one
/// login act as another inbox.
pub const SASL_AUTHZID_MISMATCH: &[u8] =
    b"-ERR [AUTH] authorization identity must be empty or equal the authentication identity\r\n";
/// STLS while the server has no certificate.
pub const STLS_UNAVAILABLE: &[u8] = b"-ERR STLS not available\r\n";
/// STLS on a connection that already runs TLS.
pub const TLS_ALREADY_ACTIVE: &[u8] = b"-ERR TLS already active\r\n";

/// A message number that is not all digits.
pub const NUMBER_NOT_DIGITS: &[u8] = b"-ERR invalid message number, expected digits\r\n";
/// Message number 0 (RFC 1939 numbers messages from 1).
pub const NUMBER_ZERO: &[u8] = b"-ERR invalid message number, messages are numbered from 1\r\n";
/// A message number too large for any maildrop (it does not fit a machine word).
pub const NUMBER_TOO_LARGE: &[u8] = b"-ERR invalid message number, too large\r\n";
/// RETR, DELE or TOP without a message number.
pub const NEED_NUMBER: &[u8] = b"-ERR message number missing\r\n";
/// TOP without its line count.
pub const NEED_LINE_COUNT: &[u8] = b"-ERR TOP needs a message number and a line count\r\n";
/// A TOP line count that is not all digits.
pub const LINES_NOT_DIGITS: &[u8] = b"-ERR invalid line count, expected digits\r\n";
/// A TOP line count that does not fit a machine word.
pub const LINES_TOO_LARGE: &[u8] = b"-ERR invalid line count, too large\r\n";
/// QUIT found messages to delete but the caller could not delete them; RFC 1939 6
/// wants the reply to say so, and none of them is deleted.
pub const UPDATE_FAILED: &[u8] =
    b"-ERR [SYS/TEMP] Deleting the marked messages failed, none was deleted\r\n";
/// RETR or TOP could not be answered because the caller never delivered the bytes (it
/// called `advance` instead of `retrieved`).
pub const RETRIEVE_FAILED: &[u8] =
    b"-ERR [SYS/TEMP] Message could not be read now, try again later\r\n";

/// The greeting: `+OK <hostname> Mayfly POP3 ready`.
pub fn greeting(hostname: &str, out: &mut Vec<u8>) {
    let _ = write!(out, "+OK {hostname} Mayfly POP3 ready\r\n");
}

/// `+OK` to QUIT with nothing to delete.
pub fn quit(hostname: &str, out: &mut Vec<u8>) {
    let _ = write!(out, "+OK {hostname} Mayfly POP3 signing off\r\n");
}

/// `+OK` to QUIT once the marked messages are deleted.
pub fn updated(hostname: &str, n_deleted: usize, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "+OK {hostname} Mayfly POP3 signing off ({n_deleted} messages deleted)\r\n"
    );
}

/// `+OK` to a successful login, with the maildrop's size (RFC 1939 7 example).
pub fn logged_in(n_messages: usize, total_bytes: u64, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "+OK Logged in, maildrop has {n_messages} messages ({total_bytes} octets)\r\n"
    );
}

/// `+OK` to STAT: the drop listing, exactly `+OK nn mm` (RFC 1939 5).
pub fn stat(n_messages: usize, total_bytes: u64, out: &mut Vec<u8>) {
    let _ = write!(out, "+OK {n_messages} {total_bytes}\r\n");
}

/// First line of the LIST reply without an argument.
pub fn list_header(n_messages: usize, total_bytes: u64, out: &mut Vec<u8>) {
    let _ = write!(out, "+OK {n_messages} messages ({total_bytes} octets)\r\n");
}

/// One scan listing: a line of the LIST reply, or after `+OK ` the reply to `LIST n`.
pub fn scan_listing(number: usize, size_bytes: u32, out: &mut Vec<u8>) {
    let _ = write!(out, "{number} {size_bytes}\r\n");
}

/// One unique-id listing: a line of the UIDL reply, or after `+OK ` the reply to
/// `UIDL n`. The unique id is the store's message id: 27 hex digits, within the
/// 1 to 70 characters from 0x21 to 0x7E that RFC 1939 7 allows, and never reused.
pub fn uid_listing(number: usize, id: MessageId, out: &mut Vec<u8>) {
    let _ = write!(out, "{number} {id}\r\n");
}

/// `+OK` to DELE.
pub fn deleted(number: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "+OK message {number} deleted\r\n");
}

/// `+OK` to RSET: the maildrop with every mark removed.
pub fn reset(n_messages: usize, total_bytes: u64, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "+OK maildrop has {n_messages} messages ({total_bytes} octets)\r\n"
    );
}

/// First line of the reply to RETR or TOP: the octets that follow, before stuffing.
pub fn retrieved(n_bytes: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "+OK {n_bytes} octets\r\n");
}

/// A message number past the end of the maildrop.
pub fn no_such_message(n_messages: usize, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "-ERR no such message, only {n_messages} messages in maildrop\r\n"
    );
}

/// A command naming a message DELE has marked (RFC 1939 5: it may not be referred to).
pub fn already_deleted(number: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "-ERR message {number} already deleted\r\n");
}

/// RETR or TOP of a message that expired or was deleted by someone else since login.
/// `SYS/TEMP`: a new session's maildrop no longer lists it, so the client's next try
/// succeeds; nothing about the client's request was wrong.
pub fn gone(number: usize, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "-ERR [SYS/TEMP] message {number} no longer exists, it expired or was deleted since login\r\n"
    );
}

/// The CAPA reply (RFC 2449 5, 6). `logins` lists USER and SASL PLAIN (not when TLS is
/// required and absent: RFC 2595 4 says not to advertise what would be refused), `stls`
/// lists STLS. The same list in both states: RFC 2449 5 requires what AUTHORIZATION
/// offers to be announced in TRANSACTION too.
///
/// No EXPIRE: it counts whole days, so any store TTL under a day would have to be
/// `EXPIRE 0` ("do not leave mail here"), which the session cannot know; without it a
/// client assumes RFC 1939's rule that the server may delete mail by site policy,
/// which is what happens. No LOGIN-DELAY: the caller's rate limits are its own.
pub fn capa(logins: bool, stls: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(CAPA_HEADER);
    out.extend_from_slice(b"TOP\r\n");
    if logins {
        out.extend_from_slice(b"USER\r\n");
    }
    out.extend_from_slice(b"UIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
    if logins {
        out.extend_from_slice(b"SASL PLAIN\r\n");
    }
    if stls {
        out.extend_from_slice(b"STLS\r\n");
    }
    out.extend_from_slice(b"IMPLEMENTATION Mayfly\r\n");
    out.extend_from_slice(END);
}
