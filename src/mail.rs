//! What a listing shows of a message: subject, date and preview, parsed from its bytes.
//!
//! Parsing is lazy: the SMTP hot path stores bytes only, and the store caches a
//! `Summary` per message the first time an HTTP reader asks for it.

use mail_parser::MessageParser;

/// Longest preview, in characters (the API contract says "up to 200").
pub const PREVIEW_CHARS_MAX: usize = 200;

/// The parsed fields of a message that summaries show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Subject header with RFC 2047 words decoded; empty when absent.
    pub subject: String,
    /// Date header as Unix seconds, when present and parseable.
    pub date_unix_secs: Option<i64>,
    /// First characters of the text body, whitespace runs collapsed to one space.
    pub preview: String,
}

impl Summary {
    /// Parses `raw` (a whole stored message); never fails: unparseable parts stay empty.
    pub fn parse(raw: &[u8]) -> Summary {
        let Some(message) = MessageParser::default().parse(raw) else {
            return Summary::default();
        };
        let subject = message.subject().unwrap_or_default().to_string();
        let date_unix_secs = message.date().map(|date| date.to_timestamp());
        let mut preview = String::new();
        if let Some(text) = message.body_text(0) {
            let mut n_chars = 0;
            for word in text.split_whitespace() {
                if n_chars >= PREVIEW_CHARS_MAX {
                    break;
                }
                if !preview.is_empty() {
                    preview.push(' ');
                    n_chars += 1;
                }
                for ch in word.chars() {
                    if n_chars >= PREVIEW_CHARS_MAX {
                        break;
                    }
                    preview.push(ch);
                    n_chars += 1;
                }
            }
        }
        Summary {
            subject,
            date_unix_secs,
            preview,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subject_date_and_preview() {
        let raw = b"Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n\
            Subject: =?utf-8?q?Hej_d=C3=A5?=\r\n\
            Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\r\n\
            Hello\r\n  world\r\n";
        let summary = Summary::parse(raw);
        assert_eq!(summary.subject, "Hej då");
        assert_eq!(summary.date_unix_secs, Some(1_795_817_744));
        assert_eq!(summary.preview, "Hello world");
    }

    #[test]
    fn preview_is_capped_in_characters() {
        let body = "é".repeat(500);
        let raw = format!("Subject: x\r\n\r\n{body}\r\n");
        assert_eq!(
            Summary::parse(raw.as_bytes()).preview.chars().count(),
            PREVIEW_CHARS_MAX
        );
    }
}
