//! SASL PLAIN (RFC 4616) as POP3 carries it (RFC 5034): a base64 response in, the inbox
//! and the password out.
//!
//! The base64 decoding is strict (RFC 4648 4: padding required, nothing but the alphabet,
//! unused bits zero: the `base64` crate's standard engine), unlike the lenient decoder
//! `mail-parser` has for message bodies, which skips whitespace and stray characters:
//! RFC 5034 4 wants a response that is not base64 rejected, and a strict decoder gives
//! every credential exactly one spelling on the wire.

use crate::address::InboxKey;

/// Credentials from one SASL PLAIN response.
#[derive(PartialEq, Eq)]
pub(crate) struct Credentials {
    /// The inbox key (`InboxKey`) of the authentication identity.
    pub user: String,
    pub password: String,
}

// By hand, so a password never reaches a log or a test failure message.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL PLAIN response was refused; each maps to one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainError {
    /// Not canonical base64.
    BadBase64,
    /// Not `authzid NUL authcid NUL passwd` in UTF-8 with a name and a password and no
    /// control characters.
    BadMessage,
    /// The authentication identity is no address (`InboxKey::new` refuses it).
    NoSuchInbox,
    /// The authorization identity is neither empty nor the same inbox.
    AuthzidMismatch,
}

/// Decodes a client's response to `AUTH PLAIN` (the initial response, with `=` already
/// turned into `""`, or the line after `+ `).
pub(crate) fn parse_plain(response: &str) -> Result<Credentials, PlainError> {
    let message = decode_base64(response.as_bytes()).ok_or(PlainError::BadBase64)?;
    let mut parts = message.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::BadMessage);
    };
    let text = |bytes: &[u8]| -> Result<String, PlainError> {
        let text = std::str::from_utf8(bytes).map_err(|_| PlainError::BadMessage)?;
        // The rule PASS lines follow too, so both ways to log in accept the same secrets.
        if text.chars().any(char::is_control) {
            return Err(PlainError::BadMessage);
        }
        Ok(text.to_string())
    };
    let (authzid, authcid, password) = (text(authzid)?, text(authcid)?, text(password)?);
    if authcid.is_empty() || password.is_empty() {
        return Err(PlainError::BadMessage);
    }
    let user = InboxKey::new(&authcid)
        .map_err(|_| PlainError::NoSuchInbox)?
        .into_string();
    // Another spelling of the same address is the same identity; anything else would
    // be one login acting for another inbox, which we have no rule to allow.
    if !authzid.is_empty() && InboxKey::new(&authzid).map(InboxKey::into_string) != Ok(user.clone())
    {
        return Err(PlainError::AuthzidMismatch);
    }
    Ok(Credentials { user, password })
}

/// Decodes canonical base64 with padding; `None` for anything else.
pub(crate) fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    // The standard engine requires canonical padding and rejects non-zero unused bits.
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_base64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn decodes_canonical_base64_only() {
        let cases: &[(&str, Option<&[u8]>)] = &[
            ("", Some(b"")),
            ("Zg==", Some(b"f")),
            ("Zm8=", Some(b"fo")),
            ("Zm9v", Some(b"foo")),
            ("Zm9vYg==", Some(b"foob")),
            ("AGFsaWNlAHNlY3JldA==", Some(b"\0alice\0secret")),
            ("+/+/", Some(&[0xfb, 0xff, 0xbf])),
            ("Zg", None),
            ("Zg=", None),
            ("Z===", None),
            ("Zh==", None),
            ("Zm9=", None),
            ("Zg==Zg==", None),
            ("Zm 9v", None),
            ("Zm9v\r\n", None),
            ("Zm-v", None),
            ("=Zm9", None),
            ("Zm=v", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                decode_base64(text.as_bytes()).as_deref(),
                *expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn decoder_inverts_the_encoder() {
        let bytes: Vec<u8> = (0..=255).collect();
        for len in 0..bytes.len() {
            let text = encode_base64(&bytes[..len]);
            assert_eq!(
                decode_base64(text.as_bytes()).as_deref(),
                Some(&bytes[..len])
            );
        }
    }

    #[test]
    fn plain_messages() {
        let ok = |user: &str, password: &str| {
            Ok(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            })
        };
        let cases: &[(&[u8], Result<Credentials, PlainError>)] = &[
            (
                b"\0alice@example.test\0secret",
                ok("alice@example.test", "secret"),
            ),
            (
                b"\0Alice@Example.TEST\0pass word",
                ok("alice@example.test", "pass word"),
            ),
            (
                b"alice@example.test\0Alice@example.test\0s",
                ok("alice@example.test", "s"),
            ),
            (
                b"\0alice@b\xc3\xbccher.example\0\xc3\xa9",
                ok("alice@xn--bcher-kva.example", "\u{e9}"),
            ),
            (
                b"bob@example.test\0alice@example.test\0s",
                Err(PlainError::AuthzidMismatch),
            ),
            (b"\x01\0alice@example.test\0s", Err(PlainError::BadMessage)),
            (b"\0alice@example.test\0", Err(PlainError::BadMessage)),
            (b"\0\0secret", Err(PlainError::BadMessage)),
            (b"alice@example.test\0secret", Err(PlainError::BadMessage)),
            (b"\0a\0b\0c", Err(PlainError::BadMessage)),
            (b"", Err(PlainError::BadMessage)),
            (
                b"\0alice@example.test\0se\tcret",
                Err(PlainError::BadMessage),
            ),
            (
                b"\0alice@example.test\0\xc2\x85",
                Err(PlainError::BadMessage),
            ),
            (b"\0alice@example.test\0\xff", Err(PlainError::BadMessage)),
            // UTS-46 refuses a label that starts with a combining mark.
            (
                b"\0u@\xcc\x80a.example.test\0s",
                Err(PlainError::NoSuchInbox),
            ),
        ];
        for (message, expected) in cases {
            let response = encode_base64(message);
            assert_eq!(
                parse_plain(&response),
                *expected,
                "{:?}",
                String::from_utf8_lossy(message)
            );
        }
        assert_eq!(parse_plain("AGFsaWNl!"), Err(PlainError::BadBase64));
    }
}
