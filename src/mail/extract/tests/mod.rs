//! Tests of `mail::extract`: a corpus of sign-up, login, reset and magic-link mails
//! (`corpus.rs` in English, `corpus_intl.rs` in other languages), each run both directly
//! and the way the server will run it (a MIME message through `ParsedMessage::parse`, so
//! the HTML is the sanitized one and an HTML-only message's text is mail-parser's
//! rendering); edge cases (`edges.rs`); and property tests (`props.rs`).

mod corpus;
mod corpus_intl;
mod edges;
mod props;

use crate::mail::ParsedMessage;
use crate::mail::extract::{Extracted, LinkKind, extract};

/// A mail of the corpus and what must be found in it.
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) subject: &'static str,
    pub(super) text: Option<&'static str>,
    pub(super) html: Option<&'static str>,
    pub(super) list_unsubscribe: Option<&'static str>,
    /// The first code, if the mail has one.
    pub(super) code: Option<&'static str>,
    /// The link marked `Verify`, if the mail has one.
    pub(super) verify: Option<&'static str>,
}

impl Case {
    pub(super) const fn new(name: &'static str, subject: &'static str) -> Case {
        Case {
            name,
            subject,
            text: None,
            html: None,
            list_unsubscribe: None,
            code: None,
            verify: None,
        }
    }

    pub(super) const fn text(mut self, text: &'static str) -> Case {
        self.text = Some(text);
        self
    }

    pub(super) const fn html(mut self, html: &'static str) -> Case {
        self.html = Some(html);
        self
    }

    pub(super) const fn list_unsubscribe(mut self, value: &'static str) -> Case {
        self.list_unsubscribe = Some(value);
        self
    }

    pub(super) const fn code(mut self, code: &'static str) -> Case {
        self.code = Some(code);
        self
    }

    pub(super) const fn verify(mut self, url: &'static str) -> Case {
        self.verify = Some(url);
        self
    }

    /// The case as a message: multipart/alternative when it has both bodies.
    fn mime(&self) -> Vec<u8> {
        let mut message = format!(
            "From: Acme <no-reply@acme.test>\r\nTo: qa@mayfly.test\r\nSubject: {}\r\nMIME-Version: 1.0\r\n",
            self.subject
        );
        if let Some(value) = self.list_unsubscribe {
            message.push_str(&format!("List-Unsubscribe: {value}\r\n"));
        }
        let part = |content_type: &str, body: &str| {
            format!(
                "Content-Type: {content_type}; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
                body.replace('\n', "\r\n")
            )
        };
        match (self.text, self.html) {
            (Some(text), Some(html)) => {
                message.push_str("Content-Type: multipart/alternative; boundary=\"b0\"\r\n\r\n");
                message.push_str(&format!("--b0\r\n{}", part("text/plain", text)));
                message.push_str(&format!("--b0\r\n{}", part("text/html", html)));
                message.push_str("--b0--\r\n");
            }
            (Some(text), None) => message.push_str(&part("text/plain", text)),
            (None, Some(html)) => message.push_str(&part("text/html", html)),
            (None, None) => message.push_str("\r\n"),
        }
        message.into_bytes()
    }

    /// What is wrong with `extracted`, if anything.
    fn mismatch(&self, extracted: &Extracted) -> Option<String> {
        let code = extracted.codes.first().map(|code| code.value.as_str());
        let verify = extracted.verify_link().map(|link| link.url.as_str());
        let n_verify = extracted
            .links
            .iter()
            .filter(|link| link.kind == LinkKind::Verify)
            .count();
        (code != self.code || verify != self.verify || n_verify > 1).then(|| {
            format!(
                "code {code:?} (want {:?}), verify {verify:?} (want {:?}): {extracted:#?}",
                self.code, self.verify
            )
        })
    }
}

/// Runs every case both ways; fails listing every case that went wrong.
pub(super) fn check_corpus(cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        let direct = extract(case.subject, case.text, case.html, case.list_unsubscribe);
        if let Some(mismatch) = case.mismatch(&direct) {
            failures.push(format!("{} (direct): {mismatch}", case.name));
        }
        let raw = case.mime();
        let (summary, parsed) = ParsedMessage::parse(&raw);
        assert_eq!(summary.subject, case.subject, "{}", case.name);
        let text = parsed.text(&raw);
        let html = parsed.html("/att/");
        let list_unsubscribe = parsed
            .headers(&raw)
            .find(|(name, _)| name.eq_ignore_ascii_case("List-Unsubscribe"))
            .map(|(_, value)| value);
        let served = extract(
            &summary.subject,
            text.as_deref(),
            html.as_deref(),
            list_unsubscribe.as_deref(),
        );
        if let Some(mismatch) = case.mismatch(&served) {
            failures.push(format!(
                "{} (parsed): {mismatch}\nhtml: {html:?}\ntext: {text:?}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
