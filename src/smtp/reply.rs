//! Every SMTP reply Mayfly sends, as a constant or a small function that writes it.
//!
//! Keeping them in one place keeps codes consistent and lets tests name them.
//!
//! Enhanced status codes (RFC 2034, RFC 3463): every 2xx, 4xx and 5xx reply carries one,
//! except the two kinds RFC 2034 section 3 exempts, the initial `220` greeting and the
//! `250` success reply to HELO/EHLO (the EHLO reply is where the client *learns* that we
//! speak ENHANCEDSTATUSCODES).
//! Error replies to HELO/EHLO and the `220 2.0.0` reply to STARTTLS do carry a code.
//! `354` is an intermediate reply, and RFC 3463 codes exist only for classes 2, 4 and 5,
//! so it has none.

use std::io::Write;

use crate::smtp::parser::Verb;

/// `250` to NOOP and RSET.
pub const OK: &[u8] = b"250 2.0.0 Ok\r\n";
/// `250` to an accepted MAIL.
pub const MAIL_OK: &[u8] = b"250 2.1.0 Sender ok\r\n";
/// `250` to an accepted (or duplicate) RCPT.
pub const RCPT_OK: &[u8] = b"250 2.1.5 Recipient ok\r\n";
/// `354` to DATA: the client may send the body.
pub const DATA_START: &[u8] = b"354 End data with <CR><LF>.<CR><LF>\r\n";
/// `221` to QUIT.
pub const QUIT: &[u8] = b"221 2.0.0 Bye\r\n";
/// `252` to VRFY: we do not confirm addresses (RFC 5321 3.5.3, 7.3).
pub const VRFY: &[u8] =
    b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n";
/// `214` to HELP.
pub const HELP: &[u8] =
    b"214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS\r\n";
/// `220` to STARTTLS when it is offered: the TLS handshake starts next.
pub const STARTTLS_READY: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";

/// STARTTLS while the server has no certificate.
pub const STARTTLS_UNAVAILABLE: &[u8] = b"502 5.5.1 STARTTLS not available\r\n";
/// MAIL before STARTTLS when the server requires TLS (RFC 3207 4).
pub const MUST_STARTTLS: &[u8] = b"530 5.7.0 Must issue a STARTTLS command first\r\n";
/// STARTTLS on a connection that already runs TLS.
pub const TLS_ALREADY_ACTIVE: &[u8] = b"503 5.5.1 TLS already active\r\n";
/// A command word we do not know.
pub const UNKNOWN_COMMAND: &[u8] = b"500 5.5.1 Command unrecognized\r\n";
/// A command line longer than `parser::COMMAND_LINE_BYTES_MAX` (RFC 5321 4.5.3.1.4).
pub const LINE_TOO_LONG: &[u8] = b"500 5.5.2 Line too long\r\n";
/// A command line with a CR or LF that is not part of its final CRLF.
pub const BARE_NEWLINE: &[u8] =
    b"500 5.5.2 Bare CR or LF in command line, lines must end with CRLF\r\n";
/// A command argument that is not valid UTF-8.
pub const INVALID_UTF8: &[u8] = b"501 5.5.4 Invalid UTF-8 in command\r\n";
/// MAIL with a malformed reverse-path.
pub const BAD_SENDER: &[u8] = b"501 5.1.7 Bad sender address syntax\r\n";
/// RCPT with a malformed forward-path.
pub const BAD_RECIPIENT: &[u8] = b"501 5.1.3 Bad recipient address syntax\r\n";
/// MAIL/RCPT parameter we do not implement (RFC 5321 4.1.1.11).
pub const PARAM_NOT_SUPPORTED: &[u8] = b"555 5.5.4 Parameter not recognized or not implemented\r\n";
/// MAIL whose reverse-path has a control character (a C1 control inside UTF-8): it would
/// garble logs and the JSON readers get.
pub const SENDER_CONTROL_CHARACTER: &[u8] =
    b"553 5.1.7 Sender address contains a control character\r\n";
/// RCPT whose address has a control character: it names no inbox (`address::InboxKey`),
/// so nothing sent to it could ever be read.
pub const RECIPIENT_CONTROL_CHARACTER: &[u8] =
    b"553 5.1.3 Recipient address contains a control character\r\n";
/// RCPT whose domain is not a valid internationalized domain name (UTS-46 refuses it), so
/// it names no inbox either.
pub const RECIPIENT_BAD_DOMAIN: &[u8] =
    b"553 5.1.3 Recipient domain is not a valid internationalized domain name\r\n";
/// Non-ASCII address in a transaction without the SMTPUTF8 parameter (RFC 6531 3.4).
pub const NEEDS_SMTPUTF8: &[u8] =
    b"553 5.6.7 Non-ASCII address requires the SMTPUTF8 parameter\r\n";

/// MAIL/RCPT/DATA/BDAT/STARTTLS before HELO/EHLO.
pub const NEED_HELO: &[u8] = b"503 5.5.1 Send HELO/EHLO first\r\n";
/// MAIL inside a transaction.
pub const NESTED_MAIL: &[u8] = b"503 5.5.1 Nested MAIL command\r\n";
/// RCPT, DATA or BDAT without MAIL.
pub const NEED_MAIL: &[u8] = b"503 5.5.1 Need MAIL command first\r\n";
/// BDAT without an accepted recipient (RFC 3030 leaves the code open; we use 503).
pub const NEED_RCPT: &[u8] = b"503 5.5.1 Need RCPT command first\r\n";
/// DATA after BDAT in the same transaction (RFC 3030 3).
pub const DATA_AFTER_BDAT: &[u8] = b"503 5.5.1 DATA not allowed after BDAT in one transaction\r\n";
/// DATA after MAIL when no RCPT was accepted. RFC 5321 3.3 allows 503 or 554; we send
/// 503 like every other "not yet" (tests/smtp_protocol.rs relies on it).
pub const NO_VALID_RECIPIENTS: &[u8] = b"503 5.5.1 No valid recipients\r\n";

/// RCPT to a domain we do not accept mail for: we never relay.
pub const RELAY_DENIED: &[u8] = b"550 5.7.1 Relaying denied: recipient domain not served here\r\n";
/// RCPT beyond `recipients_max` (RFC 5321 4.5.3.1.8).
pub const TOO_MANY_RECIPIENTS: &[u8] = b"452 4.5.3 Too many recipients\r\n";
/// MAIL SIZE= over the limit, or a body (DATA or BDAT) over it.
pub const MESSAGE_TOO_BIG: &[u8] = b"552 5.3.4 Message size exceeds fixed maximum message size\r\n";
/// A DATA text line over 1000 octets including CRLF (RFC 5321 4.5.3.1.6).
pub const TEXT_LINE_TOO_LONG: &[u8] =
    b"552 5.3.4 Message refused: text line longer than 1000 octets\r\n";
/// A DATA body with a bare CR or bare LF: refused whole, so nothing smuggled after it counts.
pub const BARE_NEWLINE_IN_DATA: &[u8] =
    b"550 5.6.0 Message refused: bare CR or LF in body, lines must end with CRLF\r\n";

/// The store or the owning shard could not take the message now.
pub const TEMPORARY_FAILURE: &[u8] =
    b"451 4.3.0 Temporary failure storing message, try again later\r\n";
/// The store cannot hold a message this large.
pub const STORE_TOO_BIG: &[u8] = b"552 5.3.4 Message too big for the store\r\n";

/// The client made too many errors; the connection closes after this.
pub const TOO_MANY_ERRORS: &[u8] = b"421 4.7.0 Too many errors, closing connection\r\n";
/// The server is shutting down; the connection closes after this.
pub const SHUTTING_DOWN: &[u8] = b"421 4.3.2 Server shutting down, try again later\r\n";
/// The server is restoring its mail from disk after a restart; sent instead of the
/// greeting, the connection closes after this.
pub const RESTORING: &[u8] = b"421 4.3.2 Server starting, restoring mail; try again shortly\r\n";
/// The client was too slow (RFC 5321 4.5.3.2); the connection closes after this.
pub const TIMEOUT: &[u8] = b"421 4.4.2 Timeout waiting for client, closing connection\r\n";
/// This core already serves its maximum of sessions; sent instead of the greeting.
pub const TOO_MANY_SESSIONS: &[u8] = b"421 4.7.0 Too many sessions, try again later\r\n";
/// The client's address already holds `--max-sessions-per-ip` sessions on this core; sent
/// instead of the greeting.
pub const TOO_MANY_SESSIONS_FROM_CLIENT: &[u8] =
    b"421 4.7.0 Too many sessions from your address, try again later\r\n";
/// An idle session that never started a transaction is closed to make room for another
/// sender while the core is at its session cap.
pub const IDLE_CUT_UNDER_STRESS: &[u8] =
    b"421 4.7.0 Server busy, closing idle session; try again later\r\n";
/// MAIL from a client over `--max-messages-per-ip-per-minute`; the connection closes.
pub const TOO_MANY_MESSAGES_FROM_CLIENT: &[u8] =
    b"421 4.7.0 Too many messages from your address, try again later\r\n";
/// RCPT for an inbox in a partition this node does not own (`--owned-partitions`): a
/// transient failure, so a relay with an outdated partition map queues and retries.
pub const PARTITION_NOT_SERVED: &[u8] =
    b"450 4.1.1 Recipient's partition not served by this node, try again later\r\n";
/// rspamd scored the message at or above `--spam-reject-score`; nothing was stored.
pub const SPAM_REJECTED: &[u8] = b"550 5.7.1 Message rejected as spam\r\n";
/// Every command but QUIT from a client refused before the greeting (RFC 5321 3.1: after
/// a 554 greeting the server answers 503 until the client quits).
pub const REFUSED_SESSION: &[u8] = b"503 5.5.1 No service for you, send QUIT\r\n";

/// Sent instead of the greeting to a client the `--dnsbl` lists weigh over the
/// threshold (RFC 5321 3.1's 554 greeting; RFC 5782 leaves the text to us). Names the
/// zone, as Postfix does, so the sender's operator knows which list to ask.
pub fn blocklisted(zone: &str) -> Vec<u8> {
    format!("554 5.7.1 Service unavailable; client blocked using {zone}\r\n").into_bytes()
}

/// The `501` usage reply for a command whose arguments did not parse.
pub fn syntax_error(verb: Verb) -> &'static [u8] {
    match verb {
        Verb::Helo => b"501 5.5.4 Syntax: HELO hostname\r\n",
        Verb::Ehlo => b"501 5.5.4 Syntax: EHLO hostname\r\n",
        Verb::Mail => {
            b"501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]\r\n"
        }
        Verb::Rcpt => b"501 5.5.4 Syntax: RCPT TO:<address>\r\n",
        Verb::Data => b"501 5.5.4 Syntax: DATA\r\n",
        Verb::Bdat => b"501 5.5.4 Syntax: BDAT size [LAST]\r\n",
        Verb::Rset => b"501 5.5.4 Syntax: RSET\r\n",
        Verb::Noop => b"501 5.5.4 Syntax: NOOP\r\n",
        Verb::Quit => b"501 5.5.4 Syntax: QUIT\r\n",
        Verb::Vrfy => b"501 5.5.4 Syntax: VRFY address\r\n",
        Verb::Help => b"501 5.5.4 Syntax: HELP\r\n",
        Verb::StartTls => b"501 5.5.4 Syntax: STARTTLS\r\n",
    }
}

/// The greeting: `220 <hostname> ESMTP Mayfly`.
pub fn greeting(hostname: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"220 ");
    out.extend_from_slice(hostname.as_bytes());
    out.extend_from_slice(b" ESMTP Mayfly\r\n");
}

/// The `250` reply to HELO.
pub fn helo(hostname: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"250 ");
    out.extend_from_slice(hostname.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The multi-line `250` reply to EHLO with the extensions we implement.
pub fn ehlo(hostname: &str, message_bytes_max: usize, starttls: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"250-");
    out.extend_from_slice(hostname.as_bytes());
    out.extend_from_slice(b"\r\n250-PIPELINING\r\n");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "250-SIZE {message_bytes_max}\r\n");
    out.extend_from_slice(b"250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n");
    if starttls {
        out.extend_from_slice(b"250-STARTTLS\r\n");
    }
    out.extend_from_slice(b"250 CHUNKING\r\n");
}

/// `250` after a message was stored.
///
/// Only printable ASCII of `queue_id` is written, so a strange id cannot inject reply lines.
pub fn queued(queue_id: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"250 2.0.0 Ok: queued as ");
    out.extend(queue_id.bytes().filter(u8::is_ascii_graphic));
    out.extend_from_slice(b"\r\n");
}

/// `250` after a non-LAST BDAT chunk (RFC 3030 4.2 example wording).
pub fn bdat_received(chunk_bytes: u64, out: &mut Vec<u8>) {
    let _ = write!(out, "250 2.0.0 {chunk_bytes} octets received\r\n");
}

/// The three-digit code at the start of a reply (for tests and logs); 0 when malformed.
pub fn code_of(reply: &[u8]) -> u16 {
    match reply {
        [a, b, c, ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_VERBS: [Verb; 12] = [
        Verb::Helo,
        Verb::Ehlo,
        Verb::Mail,
        Verb::Rcpt,
        Verb::Data,
        Verb::Bdat,
        Verb::Rset,
        Verb::Noop,
        Verb::Quit,
        Verb::Vrfy,
        Verb::Help,
        Verb::StartTls,
    ];

    /// Every single-line reply constant, with the code and enhanced code it must carry.
    fn table() -> Vec<(&'static [u8], &'static str)> {
        let mut table: Vec<(&'static [u8], &'static str)> = vec![
            (OK, "250 2.0.0 "),
            (MAIL_OK, "250 2.1.0 "),
            (RCPT_OK, "250 2.1.5 "),
            (QUIT, "221 2.0.0 "),
            (VRFY, "252 2.5.0 "),
            (HELP, "214 2.0.0 "),
            (STARTTLS_READY, "220 2.0.0 "),
            (STARTTLS_UNAVAILABLE, "502 5.5.1 "),
            (TLS_ALREADY_ACTIVE, "503 5.5.1 "),
            (UNKNOWN_COMMAND, "500 5.5.1 "),
            (LINE_TOO_LONG, "500 5.5.2 "),
            (BARE_NEWLINE, "500 5.5.2 "),
            (INVALID_UTF8, "501 5.5.4 "),
            (BAD_SENDER, "501 5.1.7 "),
            (BAD_RECIPIENT, "501 5.1.3 "),
            (PARAM_NOT_SUPPORTED, "555 5.5.4 "),
            (SENDER_CONTROL_CHARACTER, "553 5.1.7 "),
            (RECIPIENT_CONTROL_CHARACTER, "553 5.1.3 "),
            (RECIPIENT_BAD_DOMAIN, "553 5.1.3 "),
            (NEEDS_SMTPUTF8, "553 5.6.7 "),
            (NEED_HELO, "503 5.5.1 "),
            (NESTED_MAIL, "503 5.5.1 "),
            (NEED_MAIL, "503 5.5.1 "),
            (NEED_RCPT, "503 5.5.1 "),
            (DATA_AFTER_BDAT, "503 5.5.1 "),
            (NO_VALID_RECIPIENTS, "503 5.5.1 "),
            (RELAY_DENIED, "550 5.7.1 "),
            (TOO_MANY_RECIPIENTS, "452 4.5.3 "),
            (MESSAGE_TOO_BIG, "552 5.3.4 "),
            (TEXT_LINE_TOO_LONG, "552 5.3.4 "),
            (BARE_NEWLINE_IN_DATA, "550 5.6.0 "),
            (TEMPORARY_FAILURE, "451 4.3.0 "),
            (STORE_TOO_BIG, "552 5.3.4 "),
            (TOO_MANY_ERRORS, "421 4.7.0 "),
            (SHUTTING_DOWN, "421 4.3.2 "),
            (RESTORING, "421 4.3.2 "),
            (TIMEOUT, "421 4.4.2 "),
            (TOO_MANY_SESSIONS, "421 4.7.0 "),
            (TOO_MANY_SESSIONS_FROM_CLIENT, "421 4.7.0 "),
            (IDLE_CUT_UNDER_STRESS, "421 4.7.0 "),
            (TOO_MANY_MESSAGES_FROM_CLIENT, "421 4.7.0 "),
            (SPAM_REJECTED, "550 5.7.1 "),
            (PARTITION_NOT_SERVED, "450 4.1.1 "),
            (REFUSED_SESSION, "503 5.5.1 "),
        ];
        for verb in ALL_VERBS {
            table.push((syntax_error(verb), "501 5.5.4 "));
        }
        table
    }

    #[test]
    fn every_reply_is_one_crlf_line_with_its_enhanced_code() {
        for (reply, prefix) in table() {
            let text = std::str::from_utf8(reply).expect("replies are ASCII");
            assert!(
                text.starts_with(prefix),
                "{text:?} should start with {prefix:?}"
            );
            assert!(text.ends_with("\r\n"), "{text:?}");
            assert_eq!(text.matches('\n').count(), 1, "{text:?}");
            assert_eq!(text.matches('\r').count(), 1, "{text:?}");
            assert!(text.len() <= 512, "{text:?}");
            assert_eq!(code_of(reply).to_string(), prefix[..3], "{text:?}");
        }
        // The one reply without an enhanced code besides greeting and HELO/EHLO.
        assert_eq!(code_of(DATA_START), 354);
    }

    #[test]
    fn formatted_replies() {
        let mut out = Vec::new();
        greeting("mx.example.test", &mut out);
        assert_eq!(out, b"220 mx.example.test ESMTP Mayfly\r\n");

        out.clear();
        helo("mx.example.test", &mut out);
        assert_eq!(out, b"250 mx.example.test\r\n");

        out.clear();
        queued("00abc\r\n250 fake", &mut out);
        assert_eq!(out, b"250 2.0.0 Ok: queued as 00abc250fake\r\n");

        out.clear();
        bdat_received(1234, &mut out);
        assert_eq!(out, b"250 2.0.0 1234 octets received\r\n");
    }

    #[test]
    fn ehlo_lists_extensions_and_ends_with_a_space_line() {
        for starttls in [false, true] {
            let mut out = Vec::new();
            ehlo("mx.example.test", 10_485_760, starttls, &mut out);
            let text = String::from_utf8(out).expect("ASCII");
            let lines: Vec<&str> = text.split_terminator("\r\n").collect();
            let mut expected = vec![
                "250-mx.example.test",
                "250-PIPELINING",
                "250-SIZE 10485760",
                "250-8BITMIME",
                "250-SMTPUTF8",
                "250-ENHANCEDSTATUSCODES",
            ];
            if starttls {
                expected.push("250-STARTTLS");
            }
            expected.push("250 CHUNKING");
            assert_eq!(lines, expected);
        }
    }

    #[test]
    fn code_of_reads_three_digits() {
        for (reply, code) in [
            (&b"250 ok"[..], 250),
            (b"421", 421),
            (b"25", 0),
            (b"x50 a", 0),
            (b"", 0),
        ] {
            assert_eq!(code_of(reply), code, "{reply:?}");
        }
    }
}
