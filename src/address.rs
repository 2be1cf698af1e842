//! Which inbox an address names: the one rule SMTP, HTTP and the store all use.
//!
//! RFC 5321 lets a local part be case-sensitive, but every real mailbox treats it
//! case-insensitively, and so do people typing addresses; so the inbox of an address is its
//! lowercase form. A domain written in Unicode (`bücher.example`) and its punycode form
//! (`xn--bcher-kva.example`) are the same domain, so the key holds the ASCII form
//! (UTS-46 `to_ascii`, which also applies the case and compatibility mappings).
//! Control characters name no inbox: SMTP refuses them at RCPT (553 5.1.3) and HTTP
//! answers 404, so what one side accepts the other can serve.
//!
//! The check and the fold are one function, [`InboxKey::new`], so they cannot drift.
//! Nearly every address is lowercase ASCII already: that case borrows and allocates
//! nothing.
//!
//! With `--plus-addressing` the fold also drops a `+tag` from the local part
//! (`alice+signup@d` is the inbox `alice@d`), for every protocol alike; the tag stays in
//! the address as written, which the store keeps with each message ([`plus_tag`]). The
//! switch is process-wide and set once at start, before any address is folded: an
//! inbox's key must not depend on who asks.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// `--plus-addressing`, set once by `set_plus_addressing` at start.
static PLUS_ADDRESSING: AtomicBool = AtomicBool::new(false);

/// Turns plus-addressing on or off for the process. Call it once at start, before any
/// address is folded (the runtime does, from the configuration).
pub fn set_plus_addressing(on: bool) {
    PLUS_ADDRESSING.store(on, Ordering::Relaxed);
}

/// Whether `+tag` is dropped from local parts.
pub fn plus_addressing() -> bool {
    PLUS_ADDRESSING.load(Ordering::Relaxed)
}

/// The tag of an address as written (`signup` in `alice+signup@d`) when plus-addressing
/// is on; `None` when it is off, or the address has no tag.
pub fn plus_tag(written: &str) -> Option<&str> {
    if !plus_addressing() {
        return None;
    }
    tag_range(written)
        .map(|range| &written[range])
        .filter(|tag| !tag.is_empty())
}

/// Where the tag is in `address`: after the first `+` of a local part that has something
/// before it, up to the last `@` (or the end). A quoted local part (`"a+b"@d`) has none.
fn tag_range(address: &str) -> Option<std::ops::Range<usize>> {
    let local_end = address.rfind('@').unwrap_or(address.len());
    let local = &address[..local_end];
    if local.starts_with('"') {
        return None;
    }
    let plus_idx = local.find('+').filter(|&idx| idx > 0)?;
    Some(plus_idx + 1..local_end)
}

/// The inbox an address names: lowercase, with an ASCII (punycode) domain.
///
/// Invariant: the text is what `InboxKey::new` made of some address, so it has no control
/// characters, no uppercase letters, and an ASCII domain after its last `@` (if any).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboxKey<'a>(Cow<'a, str>);

/// Why an address names no inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// A control character (C0, DEL or C1) anywhere in the address.
    #[error("the address contains a control character")]
    ControlCharacter,
    /// The domain is not a valid internationalized domain name (UTS-46 refused it).
    #[error("the domain is not a valid internationalized domain name")]
    BadDomain,
}

impl<'a> InboxKey<'a> {
    /// The inbox of `address` (any case, domain in Unicode or punycode).
    ///
    /// # Errors
    /// A control character anywhere, or a non-ASCII domain UTS-46 cannot map.
    pub fn new(address: &'a str) -> Result<InboxKey<'a>, AddressError> {
        let key = InboxKey::fold(address)?;
        if !plus_addressing() {
            return Ok(key);
        }
        Ok(key.without_tag())
    }

    /// The key with its `+tag` dropped (`alice+x@d` -> `alice@d`).
    fn without_tag(self) -> InboxKey<'a> {
        match tag_range(&self.0) {
            // The `+` goes too.
            Some(range) => InboxKey(Cow::Owned(format!(
                "{}{}",
                &self.0[..range.start - 1],
                &self.0[range.end..]
            ))),
            None => self,
        }
    }

    /// Case and domain folding, without plus-addressing.
    fn fold(address: &'a str) -> Result<InboxKey<'a>, AddressError> {
        if address.is_ascii() {
            if address.bytes().any(|b| b.is_ascii_control()) {
                return Err(AddressError::ControlCharacter);
            }
            if !address.bytes().any(|b| b.is_ascii_uppercase()) {
                return Ok(InboxKey(Cow::Borrowed(address)));
            }
            return Ok(InboxKey(Cow::Owned(address.to_ascii_lowercase())));
        }
        if address.chars().any(char::is_control) {
            return Err(AddressError::ControlCharacter);
        }
        let (local, domain) = match address.rsplit_once('@') {
            Some((local, domain)) => (local, Some(domain)),
            None => (address, None),
        };
        let mut key = local.to_lowercase();
        if let Some(domain) = domain {
            key.push('@');
            if domain.is_ascii() {
                key.push_str(&domain.to_ascii_lowercase());
            } else {
                let ascii = idna::domain_to_ascii(domain).map_err(|_| AddressError::BadDomain)?;
                key.push_str(&ascii);
            }
        }
        Ok(InboxKey(Cow::Owned(key)))
    }

    /// A key read back from where a key was stored (the store's index and envelopes).
    /// Debug builds check that it is one.
    pub fn from_stored(key: &'a str) -> InboxKey<'a> {
        debug_assert_eq!(
            InboxKey::new(key).map(|k| k.0.into_owned()),
            Ok(key.to_string())
        );
        InboxKey(Cow::Borrowed(key))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain part (after the last `@`), if any.
    pub fn domain(&self) -> Option<&str> {
        self.0.rsplit_once('@').map(|(_, domain)| domain)
    }

    /// The same key, owning its text.
    pub fn into_owned(self) -> InboxKey<'static> {
        InboxKey(Cow::Owned(self.0.into_owned()))
    }

    /// The key's text, owned.
    pub fn into_string(self) -> String {
        self.0.into_owned()
    }
}

// Hash and Eq of `InboxKey` are those of its text, so maps keyed by `InboxKey` can be
// looked up with a `&str`.
impl std::borrow::Borrow<str> for InboxKey<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for InboxKey<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InboxKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(address: &str) -> Result<String, AddressError> {
        InboxKey::new(address).map(InboxKey::into_string)
    }

    #[test]
    fn folds_case_and_domains_to_one_form() {
        let cases = [
            ("alice@example.test", "alice@example.test"),
            ("Alice@Example.TEST", "alice@example.test"),
            ("ÄLICE@example.test", "älice@example.test"),
            ("user@bücher.example", "user@xn--bcher-kva.example"),
            ("user@BÜCHER.example", "user@xn--bcher-kva.example"),
            ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
            ("user@XN--BCHER-KVA.EXAMPLE", "user@xn--bcher-kva.example"),
            ("Ünïcödé@bücher.example", "ünïcödé@xn--bcher-kva.example"),
            ("postmaster", "postmaster"),
            ("\"a b\"@example.test", "\"a b\"@example.test"),
        ];
        for (address, expected) in cases {
            assert_eq!(key(address).as_deref(), Ok(expected), "{address}");
        }
    }

    #[test]
    fn tags_are_found_in_unquoted_local_parts_only() {
        let cases = [
            (
                "alice+signup@example.test",
                Some("signup"),
                "alice@example.test",
            ),
            (
                "Alice+Sign.Up@Example.test",
                Some("sign.up"),
                "alice@example.test",
            ),
            ("alice+a+b@example.test", Some("a+b"), "alice@example.test"),
            ("alice+@example.test", Some(""), "alice@example.test"),
            ("+tag@example.test", None, "+tag@example.test"),
            ("\"a+b\"@example.test", None, "\"a+b\"@example.test"),
            ("alice@exa+mple.test", None, "alice@exa+mple.test"),
            ("alice", None, "alice"),
        ];
        for (address, tag, key) in cases {
            let folded = InboxKey::fold(address).unwrap();
            assert_eq!(
                tag_range(folded.as_str()).map(|range| &folded.as_str()[range]),
                tag,
                "{address}"
            );
            assert_eq!(folded.without_tag().as_str(), key, "{address}");
        }
    }

    #[test]
    fn lowercase_ascii_borrows() {
        assert!(matches!(
            InboxKey::new("bob@example.test"),
            Ok(InboxKey(Cow::Borrowed(_)))
        ));
    }

    #[test]
    fn control_characters_name_no_inbox() {
        for address in [
            "a\u{0}b@example.test",
            "a\tb@example.test",
            "a\u{7f}b@example.test",
            "a\u{85}b@example.test",
            "ab@exa\u{9f}mple.test",
            "ä\u{1}@example.test",
        ] {
            assert_eq!(
                key(address),
                Err(AddressError::ControlCharacter),
                "{address:?}"
            );
        }
    }

    #[test]
    fn keys_are_fixed_points() {
        for address in ["Alice@Example.TEST", "user@bücher.example", "ÄLICE@x.test"] {
            let once = key(address).unwrap();
            assert_eq!(key(&once).unwrap(), once);
            assert_eq!(InboxKey::from_stored(&once).as_str(), once);
        }
    }
}
