//! The AUTHORIZATION state's commands: USER and PASS (RFC 1939 7), AUTH PLAIN
//! (RFC 5034) and STLS (RFC 2595). Each ends in a reply or in `Event::Login`; the
//! credentials are the caller's to check.

use crate::address::InboxKey;
use crate::pop3::sasl::{self, Credentials, PlainError};
use crate::pop3::{Event, Session, State, reply};

impl Session {
    /// USER: remembers the inbox the name folds to. It never says whether the inbox
    /// exists, only whether the name could be an address at all.
    pub(super) fn user_command(&mut self, name: &str, out: &mut Vec<u8>) -> Option<Event> {
        let Ok(key) = InboxKey::new(name) else {
            return self.reply_error(reply::NO_SUCH_INBOX, out);
        };
        self.state = State::Authorization {
            user: Some(key.into_string()),
        };
        out.extend_from_slice(reply::USER_OK);
        None
    }

    /// PASS: the USER before it is used up, whatever the caller answers (RFC 1939 7:
    /// after a refused PASS the client starts again with USER or AUTH).
    pub(super) fn pass(&mut self, password: &str, out: &mut Vec<u8>) -> Option<Event> {
        let State::Authorization { user } = &mut self.state else {
            return None;
        };
        let Some(user) = user.take() else {
            return self.reply_error(reply::NEED_USER, out);
        };
        self.login(user, password.to_string())
    }

    pub(super) fn auth(
        &mut self,
        mechanism: Option<&str>,
        initial_response: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let Some(mechanism) = mechanism else {
            out.extend_from_slice(reply::SASL_MECHANISMS);
            return None;
        };
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return self.reply_error(reply::UNSUPPORTED_MECHANISM, out);
        }
        // AUTH starts a new login, whatever USER said before.
        self.state = State::Authorization { user: None };
        match initial_response {
            None => {
                self.state = State::SaslResponse;
                out.extend_from_slice(reply::SASL_CONTINUE);
                None
            }
            // RFC 5034 4: `=` is an initial response of zero length.
            Some("=") => self.plain_response("", out),
            Some(response) => self.plain_response(response, out),
        }
    }

    /// The client's SASL PLAIN response, from the AUTH line or the line after `+ `.
    pub(super) fn plain_response(&mut self, response: &str, out: &mut Vec<u8>) -> Option<Event> {
        match sasl::parse_plain(response) {
            Ok(Credentials { user, password }) => self.login(user, password),
            Err(error) => self.reply_error(
                match error {
                    PlainError::BadBase64 => reply::SASL_BAD_BASE64,
                    PlainError::BadMessage => reply::SASL_BAD_PLAIN,
                    PlainError::NoSuchInbox => reply::NO_SUCH_INBOX,
                    PlainError::AuthzidMismatch => reply::SASL_AUTHZID_MISMATCH,
                },
                out,
            ),
        }
    }

    pub(super) fn stls(&mut self, out: &mut Vec<u8>) -> Option<Event> {
        if self.tls_active {
            return self.reply_error(reply::TLS_ALREADY_ACTIVE, out);
        }
        if !self.config.starttls_available {
            return self.reply_error(reply::STLS_UNAVAILABLE, out);
        }
        out.extend_from_slice(reply::STLS_READY);
        Some(Event::StartTls)
    }

    /// A line that cannot be a SASL response ends the exchange, as a response the
    /// server refused would (RFC 5034 4); the client starts again with AUTH.
    pub(super) fn end_sasl_exchange(&mut self) {
        if self.state == State::SaslResponse {
            self.state = State::Authorization { user: None };
        }
    }

    /// RFC 2595 4: with `tls_required`, credentials only travel inside TLS.
    pub(super) fn plaintext_refused(&self) -> bool {
        self.config.tls_required && !self.tls_active
    }

    fn login(&mut self, user: String, password: String) -> Option<Event> {
        self.state = State::LoginPending { user: user.clone() };
        Some(Event::Login { user, password })
    }
}
