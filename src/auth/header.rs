//! The `Authentication-Results:` header (RFC 8601): writing ours, and removing incoming
//! ones that claim to be ours (section 5), before ours is prepended.
//!
//! Both run on the executor, so both are cheap: the writer makes one string of a few
//! hundred bytes; `strip_forged` scans the header section only and copies the message
//! only when it actually removes something (mail claiming our authserv-id is rare).
//!
//! Values in the header come from DNS and from the message (a DKIM `d=` is whatever the
//! sender wrote), so each is written as a token when it is one and as a quoted string
//! otherwise, cut to `VALUE_BYTES_MAX`: no value can end a result (`;`), open a comment,
//! or fold or break the line.

use std::fmt::Write;
use std::ops::Range;

use crate::auth::results::{NAME_BYTES_MAX, truncate_str};
use crate::auth::{
    ArcCheck, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, IprevCheck, SpfCheck, SpfIdentity,
    Verdict,
};

/// Longest value written; longer ones are cut. With two values on a line and quoting, a
/// line stays under 600 octets, well within RFC 5322's 998.
pub const VALUE_BYTES_MAX: usize = NAME_BYTES_MAX;

/// The header field name, as written and as matched (case-insensitively).
const FIELD_NAME: &str = "Authentication-Results";

/// Writes our `Authentication-Results:` header, one result per folded line, ending in
/// CRLF, e.g.
///
/// ```text
/// Authentication-Results: mx.example.test;
/// <TAB>spf=pass smtp.mailfrom=example.org;
/// <TAB>dkim=pass header.d=example.org header.s=sel;
/// <TAB>dmarc=pass (p=reject) header.from=example.org;
/// <TAB>arc=none;
/// <TAB>iprev=pass
/// ```
///
/// The client's address appears (as `smtp.remote-ip` for ARC and `policy.iprev` for
/// iprev) only when `include_client_ip` is set and the results carry it.
pub fn authentication_results(
    authserv_id: &str,
    results: &AuthResults,
    include_client_ip: bool,
) -> String {
    let client_ip = results.client_ip.filter(|_| include_client_ip);
    let mut out = String::with_capacity(256);
    out.push_str(FIELD_NAME);
    out.push_str(": ");
    push_value(&mut out, authserv_id);

    out.push_str(";\r\n\tspf=");
    out.push_str(results.spf.result.as_str());
    if !results.spf.domain.is_empty() {
        out.push_str(match results.spf.identity {
            SpfIdentity::MailFrom => " smtp.mailfrom=",
            SpfIdentity::Helo => " smtp.helo=",
        });
        push_value(&mut out, &results.spf.domain);
    }

    if results.dkim.is_empty() {
        out.push_str(";\r\n\tdkim=none");
    }
    for dkim in &results.dkim {
        out.push_str(";\r\n\tdkim=");
        out.push_str(dkim.result.as_str());
        if !dkim.domain.is_empty() {
            out.push_str(" header.d=");
            push_value(&mut out, &dkim.domain);
        }
        if !dkim.selector.is_empty() {
            out.push_str(" header.s=");
            push_value(&mut out, &dkim.selector);
        }
    }

    out.push_str(";\r\n\tdmarc=");
    out.push_str(results.dmarc.result.as_str());
    if let Some(policy) = results.dmarc.policy {
        // A comment, as RFC 8601 defines no property for it (Gmail writes it the same way).
        out.push_str(" (p=");
        out.push_str(policy.as_str());
        out.push(')');
    }
    if !results.dmarc.domain.is_empty() {
        out.push_str(" header.from=");
        push_value(&mut out, &results.dmarc.domain);
    }

    out.push_str(";\r\n\tarc=");
    out.push_str(results.arc.result.as_str());
    if let Some(ip) = client_ip {
        out.push_str(" smtp.remote-ip=");
        push_value(&mut out, &ip.to_canonical().to_string());
    }

    out.push_str(";\r\n\tiprev=");
    out.push_str(results.iprev.result.as_str());
    if let Some(ip) = client_ip {
        out.push_str(" policy.iprev=");
        push_value(&mut out, &ip.to_canonical().to_string());
    }
    out.push_str("\r\n");
    out
}

/// `raw` without the `Authentication-Results` fields whose authserv-id is `authserv_id`
/// (compared case-insensitively), or `None` when there is none, so the common case copies
/// nothing. Only the header section is looked at; other authserv-ids are kept (RFC 8601
/// section 5 leaves them to the reader, who knows whom to trust).
pub fn strip_forged(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    strip_fields(raw, |field| claims_authserv_id(field, authserv_id))
}

/// `raw` without the header fields (each whole, continuation lines included) for which
/// `remove` is true, or `None` when there is none, so the common case copies nothing.
/// Only the header section is looked at.
pub fn strip_fields(raw: &[u8], remove: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let mut stripped: Option<Vec<u8>> = None;
    let mut copied_to = 0;
    for field in header_fields(raw) {
        if !remove(&raw[field.clone()]) {
            continue;
        }
        let out = stripped.get_or_insert_with(|| Vec::with_capacity(raw.len()));
        out.extend_from_slice(&raw[copied_to..field.start]);
        copied_to = field.end;
    }
    let mut out = stripped?;
    out.extend_from_slice(&raw[copied_to..]);
    Some(out)
}

/// Appends `value` (cut to `VALUE_BYTES_MAX`) as an RFC 8601 `value`: as is when it is
/// an RFC 2045 token (every domain name is), else as a quoted string in which `"` and
/// `\` (which no domain or selector has) and anything but printable ASCII become `_`, so
/// nothing needs escaping and the length cannot double.
fn push_value(out: &mut String, value: &str) {
    let value = truncate_str(value, VALUE_BYTES_MAX);
    if !value.is_empty() && value.bytes().all(is_token_byte) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for ch in value.chars() {
        let plain = ch.is_ascii_graphic() || ch == ' ';
        out.push(if plain && ch != '"' && ch != '\\' {
            ch
        } else {
            '_'
        });
    }
    out.push('"');
}

/// RFC 2045 token characters: printable ASCII except `tspecials`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// The byte range of every field of the header section, each with its continuation lines
/// and line ends; the section ends at the first empty line (or with the message).
pub fn header_fields(raw: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let first_end = line_end(raw, pos)?;
        if matches!(&raw[pos..first_end], b"\r\n" | b"\n") {
            return None;
        }
        let start = pos;
        pos = first_end;
        while matches!(raw.get(pos), Some(b' ' | b'\t')) {
            pos = line_end(raw, pos).expect("a line starts here");
        }
        Some(start..pos)
    })
}

/// Where the line starting at `pos` ends (after its LF, or at the end of `raw`); `None`
/// at the end.
fn line_end(raw: &[u8], pos: usize) -> Option<usize> {
    if pos >= raw.len() {
        return None;
    }
    Some(memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |idx| pos + idx + 1))
}

/// Whether `field` is an `Authentication-Results` field whose authserv-id is ours.
fn claims_authserv_id(field: &[u8], authserv_id: &str) -> bool {
    let Some(colon_idx) = memchr::memchr(b':', field) else {
        return false;
    };
    // RFC 5322's obsolete syntax allows white space before the colon.
    let name = field[..colon_idx].trim_ascii_end();
    if !name.eq_ignore_ascii_case(FIELD_NAME.as_bytes()) {
        return false;
    }
    let value = skip_cfws(&field[colon_idx + 1..]);
    let mut id = Vec::new();
    if let Some(quoted) = value.strip_prefix(b"\"") {
        // quoted-string: up to the closing quote, with `\x` standing for `x`.
        let mut bytes = quoted.iter();
        loop {
            match bytes.next() {
                None => return false,
                Some(b'"') => break,
                Some(b'\\') => id.extend(bytes.next()),
                Some(b'\r' | b'\n') => {}
                Some(&b) => id.push(b),
            }
        }
    } else {
        let end_idx = value
            .iter()
            .position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'('))
            .unwrap_or(value.len());
        id.extend_from_slice(&value[..end_idx]);
    }
    !id.is_empty() && id.eq_ignore_ascii_case(authserv_id.as_bytes())
}

/// `value` after leading white space, line folds and (nested) comments.
fn skip_cfws(value: &[u8]) -> &[u8] {
    let mut idx = 0;
    let mut depth = 0usize;
    while let Some(&b) = value.get(idx) {
        match b {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => idx += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        idx += 1;
    }
    value.get(idx..).unwrap_or_default()
}

/// Writes `results` as a one-line summary for logs, with no address in it: `spf=pass
/// dkim=pass dmarc=pass arc=none iprev=pass`.
pub fn summary(results: &AuthResults) -> String {
    let mut out = String::with_capacity(64);
    let _ = write!(out, "spf={}", results.spf.result.as_str());
    match results.dkim.as_slice() {
        [] => out.push_str(" dkim=none"),
        checks => {
            for check in checks {
                let _ = write!(out, " dkim={}", check.result.as_str());
            }
        }
    }
    let _ = write!(
        out,
        " dmarc={} arc={} iprev={}",
        results.dmarc.result.as_str(),
        results.arc.result.as_str(),
        results.iprev.result.as_str()
    );
    out
}

/// Reads back a header `authentication_results` wrote (its value, after the colon, folded
/// or not): the results for the message JSON, so they need no storage beside the message
/// (and survive a restart with it). None for anything it did not write.
pub fn parse_ours(value: &str) -> Option<AuthResults> {
    let mut clauses = value.split(';').map(str::trim);
    let _authserv_id = clauses.next()?;
    let mut results = AuthResults {
        spf: SpfCheck {
            result: Verdict::None,
            domain: String::new(),
            identity: SpfIdentity::MailFrom,
        },
        dkim: Vec::new(),
        dmarc: DmarcCheck {
            result: Verdict::None,
            domain: String::new(),
            policy: None,
        },
        arc: ArcCheck {
            result: Verdict::None,
        },
        iprev: IprevCheck {
            result: Verdict::None,
        },
        client_ip: None,
    };
    let mut seen_spf = false;
    for clause in clauses {
        let mut words = clause.split_whitespace();
        let (method, result) = words.next()?.split_once('=')?;
        let result = Verdict::parse(result)?;
        let mut properties: Vec<(&str, &str)> = Vec::new();
        let mut policy = None;
        for word in words {
            if let Some(comment) = word.strip_prefix("(p=").and_then(|w| w.strip_suffix(')')) {
                policy = DmarcPolicy::parse(comment);
            } else if let Some((name, value)) = word.split_once('=') {
                properties.push((name, value.trim_matches('"')));
            }
        }
        let property = |name: &str| {
            properties
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.to_string())
        };
        match method {
            "spf" => {
                seen_spf = true;
                results.spf.result = result;
                if let Some(domain) = property("smtp.helo") {
                    results.spf.identity = SpfIdentity::Helo;
                    results.spf.domain = domain;
                } else {
                    results.spf.domain = property("smtp.mailfrom").unwrap_or_default();
                }
            }
            "dkim" => {
                let domain = property("header.d").unwrap_or_default();
                let selector = property("header.s").unwrap_or_default();
                // `dkim=none` with nothing else stands for "no signature".
                if result != Verdict::None || !domain.is_empty() {
                    results.dkim.push(DkimCheck {
                        result,
                        domain,
                        selector,
                    });
                }
            }
            "dmarc" => {
                results.dmarc.result = result;
                results.dmarc.domain = property("header.from").unwrap_or_default();
                results.dmarc.policy = policy;
            }
            "arc" => results.arc.result = result,
            "iprev" => results.iprev.result = result,
            _ => return None,
        }
    }
    seen_spf.then_some(results)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::auth::{
        ArcCheck, DkimCheck, DmarcCheck, DmarcPolicy, IprevCheck, SpfCheck, Verdict,
    };

    fn passing() -> AuthResults {
        AuthResults {
            spf: SpfCheck {
                result: Verdict::Pass,
                domain: "example.org".into(),
                identity: SpfIdentity::MailFrom,
            },
            dkim: vec![DkimCheck {
                result: Verdict::Pass,
                domain: "example.org".into(),
                selector: "sel".into(),
            }],
            dmarc: DmarcCheck {
                result: Verdict::Pass,
                domain: "example.org".into(),
                policy: Some(DmarcPolicy::Reject),
            },
            arc: ArcCheck {
                result: Verdict::None,
            },
            iprev: IprevCheck {
                result: Verdict::Pass,
            },
            client_ip: None,
        }
    }

    #[test]
    fn writes_one_folded_header() {
        assert_eq!(
            authentication_results("mx.example.test", &passing(), false),
            "Authentication-Results: mx.example.test;\r\n\
             \tspf=pass smtp.mailfrom=example.org;\r\n\
             \tdkim=pass header.d=example.org header.s=sel;\r\n\
             \tdmarc=pass (p=reject) header.from=example.org;\r\n\
             \tarc=none;\r\n\
             \tiprev=pass\r\n"
        );
    }

    #[test]
    fn names_the_client_only_when_asked() {
        let mut results = passing();
        results.client_ip = Some("192.0.2.7".parse().unwrap());
        let without = authentication_results("mx.example.test", &results, false);
        assert!(!without.contains("192.0.2.7"), "{without}");
        let with = authentication_results("mx.example.test", &results, true);
        assert!(
            with.contains("\tarc=none smtp.remote-ip=192.0.2.7;\r\n"),
            "{with}"
        );
        assert!(
            with.ends_with("\tiprev=pass policy.iprev=192.0.2.7\r\n"),
            "{with}"
        );
        // Asked, but the results do not carry it: nothing to write.
        results.client_ip = None;
        assert!(!authentication_results("mx.example.test", &results, true).contains("policy."));
        // IPv6 has colons, which a token cannot: quoted. A mapped IPv4 is written as IPv4.
        results.client_ip = Some("2001:db8::1".parse().unwrap());
        let v6 = authentication_results("mx.example.test", &results, true);
        assert!(v6.contains("policy.iprev=\"2001:db8::1\""), "{v6}");
        results.client_ip = Some("::ffff:192.0.2.9".parse::<IpAddr>().unwrap());
        let mapped = authentication_results("mx.example.test", &results, true);
        assert!(mapped.contains("policy.iprev=192.0.2.9\r\n"), "{mapped}");
    }

    #[test]
    fn writes_each_kind_of_result() {
        let mut results = passing();
        results.spf = SpfCheck {
            result: Verdict::SoftFail,
            domain: "helo.example.org".into(),
            identity: SpfIdentity::Helo,
        };
        results.dkim = vec![
            DkimCheck {
                result: Verdict::Fail,
                domain: "a.example".into(),
                selector: "s1".into(),
            },
            DkimCheck {
                result: Verdict::TempError,
                domain: String::new(),
                selector: String::new(),
            },
        ];
        results.dmarc = DmarcCheck {
            result: Verdict::None,
            domain: String::new(),
            policy: None,
        };
        results.arc.result = Verdict::Fail;
        results.iprev.result = Verdict::PermError;
        assert_eq!(
            authentication_results("mx.example.test", &results, false),
            "Authentication-Results: mx.example.test;\r\n\
             \tspf=softfail smtp.helo=helo.example.org;\r\n\
             \tdkim=fail header.d=a.example header.s=s1;\r\n\
             \tdkim=temperror;\r\n\
             \tdmarc=none;\r\n\
             \tarc=fail;\r\n\
             \tiprev=permerror\r\n"
        );
        results.dkim.clear();
        assert!(
            authentication_results("mx.example.test", &results, false).contains("\tdkim=none;\r\n")
        );
    }

    #[test]
    fn hostile_values_cannot_change_what_the_header_says() {
        let mut results = passing();
        results.dkim[0].domain = "evil.example; dkim=pass (x\r\n\tspf=pass".into();
        results.dkim[0].selector = "s\"el\\".into();
        results.dmarc.domain = "bücher.example".into();
        let header = authentication_results("mx.example.test", &results, false);
        assert!(
            header.contains(
                "\tdkim=pass header.d=\"evil.example; dkim=pass (x___spf=pass\" header.s=\"s_el_\";\r\n"
            ),
            "{header}"
        );
        assert!(
            header.contains("header.from=\"b_cher.example\""),
            "{header}"
        );
        // Every line but the first starts with a tab, and only CRLF ends lines.
        let lines: Vec<&str> = header.trim_end_matches("\r\n").split("\r\n").collect();
        assert_eq!(lines.len(), 6);
        assert!(lines[1..].iter().all(|line| line.starts_with('\t')));
        assert!(!header.replace("\r\n", "").contains(['\r', '\n']));
    }

    #[test]
    fn lines_stay_within_rfc_5322s_limit() {
        let mut results = passing();
        let long = "ä".repeat(400);
        results.spf.domain = long.clone();
        results.dkim[0].domain = "x".repeat(1_000);
        results.dkim[0].selector = long;
        let header = authentication_results(&"h".repeat(600), &results, false);
        for line in header.split("\r\n") {
            assert!(line.len() <= 600, "{} octets: {line}", line.len());
        }
    }

    #[test]
    fn summary_names_no_address() {
        let mut results = passing();
        results.client_ip = Some("192.0.2.7".parse().unwrap());
        assert_eq!(
            summary(&results),
            "spf=pass dkim=pass dmarc=pass arc=none iprev=pass"
        );
    }

    /// (message, what `strip_forged` returns for authserv-id `mx.example.test`).
    const STRIP_CASES: &[(&str, Option<&str>)] = &[
        // No Authentication-Results at all: no copy.
        ("From: a@example.org\r\n\r\nbody\r\n", None),
        // Another server's results are kept.
        (
            "Authentication-Results: mx.other.test; spf=pass\r\nFrom: a\r\n\r\nb\r\n",
            None,
        ),
        // Ours is removed; its neighbours stay.
        (
            "Received: x\r\nAuthentication-Results: mx.example.test; spf=pass\r\nFrom: a\r\n\r\nb\r\n",
            Some("Received: x\r\nFrom: a\r\n\r\nb\r\n"),
        ),
        // Field name and authserv-id in any case.
        (
            "authentication-RESULTS: MX.Example.TEST; dkim=pass\r\nFrom: a\r\n\r\nb\r\n",
            Some("From: a\r\n\r\nb\r\n"),
        ),
        // Folded: every continuation line goes with the field.
        (
            "Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=x;\r\n  dkim=pass\r\nFrom: a\r\n\r\nb\r\n",
            Some("From: a\r\n\r\nb\r\n"),
        ),
        // The authserv-id itself on a continuation line, after a comment.
        (
            "From: a\r\nAuthentication-Results:\r\n (forged (nested)) mx.example.test;\r\n\tspf=pass\r\n\r\nb\r\n",
            Some("From: a\r\n\r\nb\r\n"),
        ),
        // Quoted, and followed by a version.
        (
            "Authentication-Results: \"mx.example.test\"; spf=pass\r\nAuthentication-Results: mx.example.test 1; dkim=pass\r\n\r\nb\r\n",
            Some("\r\nb\r\n"),
        ),
        // Obsolete white space before the colon.
        (
            "Authentication-Results : mx.example.test; spf=pass\r\nFrom: a\r\n\r\n",
            Some("From: a\r\n\r\n"),
        ),
        // Look-alikes are someone else's.
        (
            "Authentication-Results: mx.example.test.evil; spf=pass\r\nAuthentication-Results: mx.example.tes; spf=pass\r\nX-Authentication-Results: mx.example.test; spf=pass\r\n\r\n",
            None,
        ),
        // Ours among others: only ours goes, the others stay in place.
        (
            "Authentication-Results: mx.other.test; spf=fail\r\nAuthentication-Results: mx.example.test; spf=pass\r\nAuthentication-Results: mx.third.test; none\r\n\r\nb\r\n",
            Some(
                "Authentication-Results: mx.other.test; spf=fail\r\nAuthentication-Results: mx.third.test; none\r\n\r\nb\r\n",
            ),
        ),
        // In the body it is text, not a header.
        (
            "From: a\r\n\r\nAuthentication-Results: mx.example.test; spf=pass\r\n",
            None,
        ),
        // The last field of a message with no body, and no final line end.
        (
            "From: a\r\nAuthentication-Results: mx.example.test; spf=pass",
            Some("From: a\r\n"),
        ),
        // Bare LF line ends.
        (
            "Authentication-Results: mx.example.test;\n spf=pass\nFrom: a\n\nb\n",
            Some("From: a\n\nb\n"),
        ),
        // An unterminated quoted id or an empty value claims nothing.
        (
            "Authentication-Results: \"mx.example.test; spf=pass\r\nAuthentication-Results:\r\n\r\n",
            None,
        ),
    ];

    #[test]
    fn strip_forged_removes_only_our_authserv_id() {
        for (idx, (message, expected)) in STRIP_CASES.iter().enumerate() {
            let stripped = strip_forged(message.as_bytes(), "mx.example.test");
            let stripped = stripped
                .as_deref()
                .map(|bytes| std::str::from_utf8(bytes).unwrap());
            assert_eq!(stripped, *expected, "case {idx}: {message:?}");
        }
    }

    #[test]
    fn strip_forged_then_our_header_parses_back_as_ours() {
        let header = authentication_results("mx.example.test", &passing(), false);
        let message = format!("{header}From: a\r\n\r\nbody\r\n");
        assert_eq!(
            strip_forged(message.as_bytes(), "MX.EXAMPLE.TEST").as_deref(),
            Some(&b"From: a\r\n\r\nbody\r\n"[..])
        );
    }

    #[test]
    fn our_header_reads_back_as_written() {
        let results = AuthResults {
            spf: SpfCheck {
                result: Verdict::SoftFail,
                domain: "sender.test".to_string(),
                identity: SpfIdentity::MailFrom,
            },
            dkim: vec![
                DkimCheck {
                    result: Verdict::Pass,
                    domain: "sender.test".to_string(),
                    selector: "s1".to_string(),
                },
                DkimCheck {
                    result: Verdict::Fail,
                    domain: "other.test".to_string(),
                    selector: "s2".to_string(),
                },
            ],
            dmarc: DmarcCheck {
                result: Verdict::Pass,
                domain: "sender.test".to_string(),
                policy: Some(DmarcPolicy::Reject),
            },
            arc: ArcCheck {
                result: Verdict::None,
            },
            iprev: IprevCheck {
                result: Verdict::TempError,
            },
            client_ip: None,
        };
        let header = authentication_results("mx.example.test", &results, false);
        let value = header
            .strip_prefix("Authentication-Results:")
            .expect("the field name")
            .replace("\r\n\t", " ");
        assert_eq!(parse_ours(&value), Some(results.clone()));
        let none = AuthResults {
            dkim: Vec::new(),
            ..results
        };
        let header = authentication_results("mx.example.test", &none, false);
        let value = header
            .strip_prefix("Authentication-Results:")
            .expect("name");
        assert_eq!(parse_ours(value), Some(none));
        assert_eq!(parse_ours(" mx; foo=pass"), None);
        assert_eq!(parse_ours("garbage"), None);
    }
}
