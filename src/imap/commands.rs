//! The commands: one parsed command in, responses and at most one event out.
//!
//! Which command is allowed in which state follows RFC 3501 3: before login only
//! CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE, LOGIN and ID; FETCH, STORE, SEARCH,
//! EXPUNGE, CHECK, CLOSE and UNSELECT need a selected mailbox. A command in the wrong
//! state is a BAD, counted towards `ERRORS_MAX`.

use imap_codec::CommandCodec;
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox as WireMailbox};

use crate::imap::extra::{self, Extra, StatusItem};
use crate::imap::framing::{command_word, tag_of};
use crate::imap::model::Selected;
use crate::imap::{Event, Job, MailboxPurpose, Mode, Session, State};
use crate::imap::{fetch, reply};
use crate::mailbox::Mailbox;

/// Commands that would change mailboxes or add messages: one read-only INBOX per
/// address has none of them.
const NOT_SUPPORTED: &str = "Mayfly keeps one INBOX per address and nothing else";

impl Session {
    /// `feed` stopped at a synchronizing literal: send the continuation if the command is
    /// plausible so far and the literal fits, else refuse the command now, before the
    /// client sends the literal's bytes (RFC 3501 7.5).
    pub(super) fn sync_literal(&mut self, length_bytes: u32, out: &mut Vec<u8>) -> Option<Event> {
        let command = self.framer.command();
        let tag = tag_of(command).unwrap_or("*").to_string();
        let word = command_word(command).unwrap_or_default();
        if word == "APPEND" {
            // The message would be refused anyway; do not make the client upload it.
            self.framer.reset();
            reply::no(out, &tag, Some("CANNOT"), NOT_SUPPORTED);
            return None;
        }
        let plausible = match CommandCodec::default().decode(command) {
            Err(CommandDecodeError::LiteralFound { .. } | CommandDecodeError::Incomplete) => true,
            Err(CommandDecodeError::Failed) => matches!(word.as_str(), "ID" | "STATUS"),
            Ok(_) => false,
        };
        if !plausible {
            self.framer.reset();
            return self.bad(&tag, "Command syntax error", out);
        }
        if !self.framer.accept_literal(length_bytes) {
            self.framer.reset();
            return self.bad(&tag, "Literal too big", out);
        }
        out.extend_from_slice(reply::CONTINUE_LITERAL);
        None
    }

    /// Parses and executes one whole command.
    pub(super) fn command(&mut self, command: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        match CommandCodec::default().decode(command) {
            Ok((b"", parsed)) => self.execute(parsed, out),
            Err(CommandDecodeError::Failed) => match extra::parse(command) {
                Some((tag, extra)) => {
                    let tag = tag.to_string();
                    self.execute_extra(&tag, extra, out)
                }
                None => self.syntax_error(command, out),
            },
            _ => self.syntax_error(command, out),
        }
    }

    fn syntax_error(&mut self, command: &[u8], out: &mut Vec<u8>) -> Option<Event> {
        let tag = tag_of(command).unwrap_or("*").to_string();
        let known = [
            "CAPABILITY",
            "NOOP",
            "LOGOUT",
            "STARTTLS",
            "AUTHENTICATE",
            "LOGIN",
            "SELECT",
            "EXAMINE",
            "CREATE",
            "DELETE",
            "RENAME",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "LIST",
            "LSUB",
            "STATUS",
            "APPEND",
            "CHECK",
            "CLOSE",
            "EXPUNGE",
            "SEARCH",
            "FETCH",
            "STORE",
            "COPY",
            "MOVE",
            "UID",
            "IDLE",
            "ENABLE",
            "UNSELECT",
            "ID",
            "NAMESPACE",
        ];
        let word = command_word(command).unwrap_or_default();
        if known.contains(&word.as_str()) {
            self.bad(&tag, "Command syntax error", out)
        } else {
            self.bad(&tag, "Unknown command", out)
        }
    }

    fn execute(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Option<Event> {
        let tag = command.tag.inner().to_string();
        let tag = tag.as_str();
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        let selected = matches!(self.state, State::Selected(_));
        match command.body {
            CommandBody::Capability => {
                out.extend_from_slice(b"* CAPABILITY ");
                self.write_capabilities(out);
                out.extend_from_slice(b"\r\n");
                self.finish(tag, "CAPABILITY completed", true, out);
                None
            }
            CommandBody::Noop if selected => self.need_mailbox(
                tag,
                MailboxPurpose::Sync {
                    command: "NOOP completed",
                },
            ),
            CommandBody::Noop => {
                reply::ok(out, tag, "NOOP completed");
                None
            }
            CommandBody::Logout => {
                out.extend_from_slice(
                    format!("* BYE {} Mayfly IMAP logging out\r\n", self.config.hostname)
                        .as_bytes(),
                );
                reply::ok(out, tag, "LOGOUT completed");
                self.closing = true;
                Some(Event::Logout)
            }
            CommandBody::StartTLS => {
                if !self.config.starttls_available || self.tls_active || authenticated {
                    return self.bad(tag, "STARTTLS not available now", out);
                }
                reply::ok(out, tag, "Begin TLS negotiation now");
                self.job = Job::StartTls;
                self.awaiting = Some(Event::StartTls);
                Some(Event::StartTls)
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if authenticated {
                    return self.bad(tag, "Already logged in", out);
                }
                if self.login_disabled() {
                    reply::no(out, tag, Some("PRIVACYREQUIRED"), "Use STARTTLS first");
                    return self.count_error(out);
                }
                if mechanism != AuthMechanism::Plain {
                    reply::no(out, tag, Some("CANNOT"), "Only AUTH=PLAIN is supported");
                    return self.count_error(out);
                }
                match initial_response {
                    Some(response) => self.sasl_plain(tag, response.declassify(), out),
                    None => {
                        out.extend_from_slice(reply::CONTINUE_AUTHENTICATE);
                        self.mode = Mode::AuthenticateData {
                            tag: tag.to_string(),
                        };
                        None
                    }
                }
            }
            CommandBody::Login { username, password } => {
                if authenticated {
                    return self.bad(tag, "Already logged in", out);
                }
                if self.login_disabled() {
                    reply::no(out, tag, Some("PRIVACYREQUIRED"), "Use STARTTLS first");
                    return self.count_error(out);
                }
                self.start_login(tag, username.as_ref(), password.declassify().as_ref(), out)
            }
            _ if !authenticated => self.bad(tag, "Log in first", out),
            CommandBody::Select { mailbox } => self.select(tag, &mailbox, false, out),
            CommandBody::Examine { mailbox } => self.select(tag, &mailbox, true, out),
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                list(
                    out,
                    mailbox_bytes(&reference),
                    list_bytes(&mailbox_wildcard),
                    "LIST",
                );
                self.finish(tag, "LIST completed", true, out);
                None
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                list(
                    out,
                    mailbox_bytes(&reference),
                    list_bytes(&mailbox_wildcard),
                    "LSUB",
                );
                self.finish(tag, "LSUB completed", true, out);
                None
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => {
                let items = item_names.iter().filter_map(StatusItem::of).collect();
                self.status(tag, mailbox_bytes(&mailbox), items, out)
            }
            CommandBody::Subscribe { mailbox } | CommandBody::Unsubscribe { mailbox }
                if is_inbox(mailbox_bytes(&mailbox)) =>
            {
                // INBOX is always there; clients that subscribe to it need no refusal.
                self.finish(tag, "Done", true, out);
                None
            }
            CommandBody::Idle => {
                self.finish_untagged(out);
                if self.closing {
                    // The inbox was reset (BYE written): no `+ idling` after a BYE.
                    return Some(Event::Close);
                }
                out.extend_from_slice(reply::CONTINUE_IDLE);
                self.mode = Mode::Idle {
                    tag: tag.to_string(),
                };
                Some(Event::Idle)
            }
            CommandBody::Enable { .. } => {
                // Nothing to enable: UTF8=ACCEPT and CONDSTORE are not offered.
                out.extend_from_slice(reply::ENABLED_NOTHING);
                reply::ok(out, tag, "ENABLE completed");
                None
            }
            CommandBody::Check if selected => self.need_mailbox(
                tag,
                MailboxPurpose::Sync {
                    command: "CHECK completed",
                },
            ),
            CommandBody::Unselect if selected => {
                self.state = State::Authenticated;
                reply::ok(out, tag, "UNSELECT completed");
                None
            }
            CommandBody::Close if selected => self.expunge(tag, None, true, out),
            CommandBody::Expunge if selected => self.expunge(tag, None, false, out),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                if !selected {
                    return self.bad(tag, "No mailbox selected", out);
                }
                let charset_ok = charset.as_ref().is_none_or(|charset| {
                    ["UTF-8", "US-ASCII"]
                        .iter()
                        .any(|ok| charset.as_ref().eq_ignore_ascii_case(ok))
                });
                if !charset_ok {
                    reply::no(
                        out,
                        tag,
                        Some("BADCHARSET (UTF-8 US-ASCII)"),
                        "Unsupported charset",
                    );
                    return None;
                }
                self.search(tag, &criteria, uid, out)
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
            } => {
                if !selected {
                    return self.bad(tag, "No mailbox selected", out);
                }
                let items = fetch::items_of(&macro_or_item_names);
                if items.is_empty() {
                    // `FETCH 1 ()`: imap-codec takes the empty list, RFC 3501's grammar
                    // does not (`"(" fetch-att *(SP fetch-att) ")"`), and answering it
                    // would write `* 1 FETCH ()`, which no client can parse (a FETCH
                    // response holds at least one item). Found by fuzzing
                    // (`tests/fuzz/regressions/imap_session/`).
                    return self.bad(tag, "Empty FETCH item list", out);
                }
                self.fetch(tag, &sequence_set, items, uid, out)
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
            } => {
                if !selected {
                    return self.bad(tag, "No mailbox selected", out);
                }
                self.store(tag, &sequence_set, kind, response, &flags, uid, out)
            }
            CommandBody::Check
            | CommandBody::Unselect
            | CommandBody::Close
            | CommandBody::Expunge => self.bad(tag, "No mailbox selected", out),
            other => {
                let text = format!("{} is not supported: {NOT_SUPPORTED}", other.name());
                reply::no(out, tag, Some("CANNOT"), &text);
                None
            }
        }
    }

    fn execute_extra(&mut self, tag: &str, extra: Extra, out: &mut Vec<u8>) -> Option<Event> {
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        match extra {
            Extra::Id => {
                out.extend_from_slice(reply::ID_RESPONSE);
                self.finish(tag, "ID completed", true, out);
                None
            }
            _ if !authenticated => self.bad(tag, "Log in first", out),
            Extra::Namespace => {
                out.extend_from_slice(reply::NAMESPACE_RESPONSE);
                self.finish(tag, "NAMESPACE completed", true, out);
                None
            }
            Extra::Status { mailbox, items } => self.status(tag, &mailbox, items, out),
            Extra::UidExpunge(set) => {
                if !matches!(self.state, State::Selected(_)) {
                    return self.bad(tag, "No mailbox selected", out);
                }
                self.expunge(tag, Some(&set), false, out)
            }
        }
    }

    /// Checks a SASL PLAIN response (RFC 4616: authzid NUL authcid NUL password).
    pub(super) fn sasl_plain(
        &mut self,
        tag: &str,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let fields: Vec<&[u8]> = data.split(|&b| b == 0).collect();
        let [authzid, authcid, password] = fields[..] else {
            return self.refuse_login(tag, "AUTHENTICATIONFAILED", "Malformed PLAIN response", out);
        };
        if !authzid.is_empty() && authzid != authcid {
            return self.refuse_login(
                tag,
                "AUTHORIZATIONFAILED",
                "Cannot act as another user",
                out,
            );
        }
        self.start_login(tag, authcid, password, out)
    }

    fn start_login(
        &mut self,
        tag: &str,
        user: &[u8],
        password: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return self.refuse_login(tag, "AUTHENTICATIONFAILED", "Invalid credentials", out);
        };
        self.job = Job::Login {
            tag: tag.to_string(),
            user: user.to_string(),
        };
        let event = Event::Login {
            user: user.to_string(),
            password: password.to_string(),
        };
        self.awaiting = Some(event.clone());
        Some(event)
    }

    fn refuse_login(
        &mut self,
        tag: &str,
        code: &str,
        text: &str,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        reply::no(out, tag, Some(code), text);
        self.n_login_failures += 1;
        if self.n_login_failures >= super::LOGIN_FAILURES_MAX {
            out.extend_from_slice(reply::BYE_TOO_MANY_LOGIN_FAILURES);
            self.closing = true;
            return Some(Event::Close);
        }
        None
    }

    fn need_mailbox(&mut self, tag: &str, purpose: MailboxPurpose) -> Option<Event> {
        self.job = Job::Mailbox {
            tag: tag.to_string(),
            purpose,
        };
        self.awaiting = Some(Event::NeedMailbox);
        Some(Event::NeedMailbox)
    }

    fn select(
        &mut self,
        tag: &str,
        mailbox: &WireMailbox<'_>,
        read_only: bool,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        // RFC 3501 6.3.1: SELECT first closes the selected mailbox, even if it fails.
        self.state = State::Authenticated;
        if !is_inbox(mailbox_bytes(mailbox)) {
            reply::no(out, tag, Some("NONEXISTENT"), "Only INBOX exists here");
            return None;
        }
        self.need_mailbox(tag, MailboxPurpose::Select { read_only })
    }

    /// The responses to SELECT or EXAMINE once the mailbox has come.
    pub(super) fn selected_now(
        &mut self,
        tag: &str,
        mailbox: Mailbox,
        read_only: bool,
        out: &mut Vec<u8>,
    ) {
        let selected = Selected::new(mailbox, read_only);
        let line = |out: &mut Vec<u8>, text: String| {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        line(out, format!("* FLAGS {}", reply::FLAGS_SUPPORTED));
        line(out, format!("* {} EXISTS", selected.slots().len()));
        line(out, "* 0 RECENT".to_string());
        if let Some(seq) = selected.first_unseen() {
            line(out, format!("* OK [UNSEEN {seq}] First unseen"));
        }
        line(
            out,
            format!("* OK [UIDVALIDITY {}] UIDs valid", selected.uid_validity),
        );
        line(
            out,
            format!("* OK [UIDNEXT {}] Predicted next UID", selected.uid_next),
        );
        if read_only {
            line(
                out,
                "* OK [PERMANENTFLAGS ()] Read-only mailbox".to_string(),
            );
            line(out, format!("{tag} OK [READ-ONLY] EXAMINE completed"));
        } else {
            line(
                out,
                format!("* OK [PERMANENTFLAGS {}] Limited", reply::FLAGS_SUPPORTED),
            );
            line(out, format!("{tag} OK [READ-WRITE] SELECT completed"));
        }
        self.state = State::Selected(selected);
    }

    fn status(
        &mut self,
        tag: &str,
        mailbox: &[u8],
        items: Vec<StatusItem>,
        out: &mut Vec<u8>,
    ) -> Option<Event> {
        if !is_inbox(mailbox) {
            reply::no(out, tag, Some("NONEXISTENT"), "Only INBOX exists here");
            return None;
        }
        self.need_mailbox(tag, MailboxPurpose::Status { items })
    }

    /// Writes the untagged responses a command ends with (see `finish`), without the
    /// tagged one: for IDLE, whose tagged response comes at DONE.
    fn finish_untagged(&mut self, out: &mut Vec<u8>) {
        if let State::Selected(selected) = &mut self.state
            && selected.apply(out, true) == super::model::Applied::ValidityChanged
        {
            out.extend_from_slice(reply::BYE_UIDVALIDITY_CHANGED);
            self.closing = true;
        }
    }
}

/// `* STATUS INBOX (...)` with the items in the order asked.
pub(super) fn write_status(out: &mut Vec<u8>, mailbox: &Mailbox, items: &[StatusItem]) {
    out.extend_from_slice(b"* STATUS INBOX (");
    for (item_idx, item) in items.iter().enumerate() {
        if item_idx > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(item.name().as_bytes());
        out.push(b' ');
        let value = match item {
            StatusItem::Messages => mailbox.entries.len() as u64,
            StatusItem::Recent | StatusItem::Deleted | StatusItem::DeletedStorage => 0,
            StatusItem::UidNext => u64::from(mailbox.uid_next),
            StatusItem::UidValidity => u64::from(mailbox.uid_validity),
            StatusItem::Unseen => mailbox.entries.iter().filter(|entry| !entry.seen).count() as u64,
            StatusItem::Size => mailbox.total_bytes(),
        };
        reply::push_number(out, value);
    }
    out.extend_from_slice(b")\r\n");
}

/// LIST and LSUB: INBOX when the pattern matches it; `LIST "" ""` gives the delimiter.
fn list(out: &mut Vec<u8>, reference: &[u8], pattern: &[u8], command: &str) {
    if pattern.is_empty() {
        if command == "LIST" {
            out.extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        }
        return;
    }
    let mut full = reference.to_vec();
    full.extend_from_slice(pattern);
    if wildcard_matches(&full, b"INBOX") {
        out.extend_from_slice(format!("* {command} (\\HasNoChildren) \"/\" INBOX\r\n").as_bytes());
    }
}

/// Whether `pattern` (with `*` and `%`) matches `name`, case-insensitively (INBOX is
/// case-insensitive, RFC 3501 5.1). Dynamic programming over positions of `name`, so a
/// pattern of many wildcards costs its length times the name's, not exponential time.
fn wildcard_matches(pattern: &[u8], name: &[u8]) -> bool {
    let mut matches = vec![false; name.len() + 1];
    matches[0] = true;
    for &pattern_byte in pattern {
        if pattern_byte == b'*' || pattern_byte == b'%' {
            // `%` differs from `*` only at the delimiter, and INBOX has none.
            for idx in 1..=name.len() {
                matches[idx] = matches[idx] || matches[idx - 1];
            }
        } else {
            for idx in (1..=name.len()).rev() {
                matches[idx] =
                    matches[idx - 1] && name[idx - 1].eq_ignore_ascii_case(&pattern_byte);
            }
            matches[0] = false;
        }
    }
    matches[name.len()]
}

fn is_inbox(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"INBOX")
}

fn mailbox_bytes<'m>(mailbox: &'m WireMailbox<'_>) -> &'m [u8] {
    match mailbox {
        WireMailbox::Inbox => b"INBOX",
        WireMailbox::Other(other) => other.as_ref(),
    }
}

fn list_bytes<'m>(mailbox: &'m ListMailbox<'_>) -> &'m [u8] {
    match mailbox {
        ListMailbox::Token(token) => token.as_ref(),
        ListMailbox::String(string) => string.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns() {
        let table: &[(&[u8], bool)] = &[
            (b"*", true),
            (b"%", true),
            (b"INBOX", true),
            (b"inbox", true),
            (b"IN*", true),
            (b"I%X", true),
            (b"INBOX*", true),
            (b"INBOX/*", false),
            (b"Sent", false),
            (b"**%%*", true),
            (b"INBOXX", false),
        ];
        for (pattern, expected) in table {
            assert_eq!(
                wildcard_matches(pattern, b"INBOX"),
                *expected,
                "{:?}",
                String::from_utf8_lossy(pattern)
            );
        }
    }
}
