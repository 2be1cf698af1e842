//! Which recipient domains are accepted (`DomainPolicy`), and what a domain name may look
//! like when it is configured (`domains`, `hostname`).

/// RFC 1035 2.3.4 (253 in text form without the trailing dot).
const DOMAIN_BYTES_MAX: usize = 253;
const LABEL_BYTES_MAX: usize = 63;

/// Which recipient domains the server accepts mail for.
///
/// Invariant: names are stored lowercase, without a trailing dot.
#[derive(Debug, Clone, Default)]
pub struct DomainPolicy {
    /// `example.test`: that domain exactly.
    exact: Vec<String>,
    /// `*.example.test` stored as `example.test`: that domain and every subdomain.
    wildcard: Vec<String>,
    /// The first configured domain, in its configured form (without `*.`), for generated addresses.
    first: Option<String>,
}

impl DomainPolicy {
    /// Builds the policy from configured names such as `example.test` and `*.example.test`.
    /// An empty list accepts every domain (development catch-all).
    pub fn new<S: AsRef<str>>(names: &[S]) -> DomainPolicy {
        let mut policy = DomainPolicy::default();
        for name in names {
            let name = name
                .as_ref()
                .trim()
                .trim_end_matches('.')
                .to_ascii_lowercase();
            if let Some(parent) = name.strip_prefix("*.") {
                policy.first.get_or_insert_with(|| parent.to_string());
                policy.wildcard.push(parent.to_string());
            } else {
                policy.first.get_or_insert_with(|| name.clone());
                policy.exact.push(name);
            }
        }
        policy
    }

    /// True when no domain is configured and every domain is accepted.
    pub fn is_catch_all(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    /// The first configured domain (for `POST /api/v1/addresses` without a body).
    pub fn first(&self) -> Option<&str> {
        self.first.as_deref()
    }

    /// Whether mail for `domain` (any case, optional trailing dot, in Unicode or punycode
    /// form: configured names are punycode, and `bücher.example` is `xn--bcher-kva.example`)
    /// is accepted.
    pub fn accepts(&self, domain: &str) -> bool {
        if self.is_catch_all() {
            return true;
        }
        let ascii;
        let domain = if domain.is_ascii() {
            domain
        } else {
            match idna::domain_to_ascii(domain) {
                Ok(folded) => {
                    ascii = folded;
                    &ascii
                }
                Err(_) => return false,
            }
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if self.exact.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return true;
        }
        self.wildcard.iter().any(|parent| {
            if domain.eq_ignore_ascii_case(parent) {
                return true;
            }
            let (domain, parent) = (domain.as_bytes(), parent.as_bytes());
            domain.len() > parent.len() + 1
                && domain[domain.len() - parent.len() - 1] == b'.'
                && domain[domain.len() - parent.len()..].eq_ignore_ascii_case(parent)
        })
    }
}

/// A configured recipient domain: a DNS name, optionally with a leading `*.` (that domain
/// and every subdomain) and a trailing dot.
pub(super) fn validate_domain(name: &str) -> Result<(), String> {
    let parent = name.strip_prefix("*.").unwrap_or(name);
    validate_dns_name(parent.strip_suffix('.').unwrap_or(parent))
}

/// A DNS name: dot-separated labels of ASCII letters, digits and inner hyphens (RFC 1123
/// 2.1), 1 to 63 bytes each, at most 253 bytes in all. Also used for `hostname`, which goes
/// into SMTP replies verbatim, so nothing else may get through (no spaces, no CR or LF).
pub(super) fn validate_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty domain name".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(match c {
            '@' => {
                "'@' is not allowed: give a domain such as example.test, not an address".to_string()
            }
            '*' => "'*' is only allowed as a leading '*.', as in *.example.test".to_string(),
            c if c.is_whitespace() => "spaces are not allowed".to_string(),
            c if !c.is_ascii() => {
                format!("'{c}' is not ASCII: write the name in its xn-- (punycode) form")
            }
            c => format!(
                "character '{}' is not allowed: use letters, digits, hyphens and dots",
                c.escape_debug()
            ),
        });
    }
    if name.len() > DOMAIN_BYTES_MAX {
        return Err(format!("longer than {DOMAIN_BYTES_MAX} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label (two dots in a row, or a leading dot)".to_string());
        }
        if label.len() > LABEL_BYTES_MAX {
            return Err(format!("label longer than {LABEL_BYTES_MAX} characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label '{label}' starts or ends with a hyphen"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_domains_match_their_punycode_form() {
        let policy = DomainPolicy::new(&["xn--bcher-kva.example", "*.xn--mnchen-3ya.test"]);
        assert!(policy.accepts("bücher.example"));
        assert!(policy.accepts("BÜCHER.example."));
        assert!(policy.accepts("xn--bcher-kva.example"));
        assert!(policy.accepts("mail.münchen.test"));
        assert!(!policy.accepts("bucher.example"));
    }

    #[test]
    fn domain_names() {
        let valid = [
            "example.test",
            "*.example.test",
            "EXAMPLE.Test",
            "example.test.",
            "*.example.test.",
            "localhost",
            "a-b.c-d.test",
            "xn--bcher-kva.example",
            "192.0.2.1",
            &format!("{}.test", "a".repeat(63)),
            &format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(61)),
        ];
        for name in valid {
            assert_eq!(validate_domain(name), Ok(()), "{name}");
        }
        let invalid = [
            ("", "empty"),
            ("*", "'*' is only allowed"),
            ("*.", "empty"),
            ("*.*.example.test", "'*' is only allowed"),
            ("a.*.test", "'*' is only allowed"),
            ("user@example.test", "'@' is not allowed"),
            ("exa mple.test", "spaces"),
            (" example.test", "spaces"),
            ("example.test\n", "not allowed"),
            ("example..test", "empty label"),
            (".example.test", "empty label"),
            ("example.test..", "empty label"),
            ("-a.test", "hyphen"),
            ("a-.test", "hyphen"),
            ("exa_mple.test", "'_' is not allowed"),
            ("bücher.example", "xn--"),
            (&format!("{}.test", "a".repeat(64)), "label longer than 63"),
            (
                &format!("{0}.{0}.{0}.{1}", "a".repeat(63), "b".repeat(62)),
                "longer than 253",
            ),
        ];
        for (name, expected) in invalid {
            let reason = validate_domain(name).expect_err(name);
            assert!(reason.contains(expected), "{name:?}: {reason}");
        }
    }

    #[test]
    fn policy_matches_exact_and_wildcard_domains() {
        let policy = DomainPolicy::new(&["Exact.Test.", "*.wild.test"]);
        assert!(!policy.is_catch_all());
        assert_eq!(policy.first(), Some("exact.test"));
        let cases: &[(&str, bool)] = &[
            ("exact.test", true),
            ("EXACT.test.", true),
            ("sub.exact.test", false),
            ("wild.test", true),
            ("a.wild.test", true),
            ("a.b.WILD.test", true),
            ("awild.test", false),
            (".wild.test", false),
            ("test", false),
            ("", false),
        ];
        for (domain, expected) in cases {
            assert_eq!(policy.accepts(domain), *expected, "{domain:?}");
        }
        let everything = DomainPolicy::new::<&str>(&[]);
        assert!(everything.is_catch_all());
        assert_eq!(everything.first(), None);
        assert!(everything.accepts("anything.example"));
    }
}
