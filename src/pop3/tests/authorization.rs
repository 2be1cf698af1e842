//! The AUTHORIZATION state: greeting, CAPA, USER/PASS, AUTH PLAIN, refused logins,
//! STLS and the TLS requirement.

use super::*;

fn login_event(user: &str, password: &str) -> Event {
    Event::Login {
        user: user.to_string(),
        password: password.to_string(),
    }
}

const CAPA_ALL: &str = "+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\n\
                        AUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN\r\nSTLS\r\n\
                        IMPLEMENTATION Mayfly\r\n.\r\n";
const CAPA_NO_STLS: &str = "+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\n\
                            AUTH-RESP-CODE\r\nPIPELINING\r\nSASL PLAIN\r\n\
                            IMPLEMENTATION Mayfly\r\n.\r\n";
const CAPA_NO_LOGINS: &str = "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n\
                              AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\n\
                              IMPLEMENTATION Mayfly\r\n.\r\n";
const PLAINTEXT_DISALLOWED: &str =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections\r\n";

#[test]
fn greeting_and_capa() {
    let test = run(b"CAPA\r\n");
    assert_eq!(test.text(), format!("{}{CAPA_NO_STLS}", greeting()));
    let mut test = TestSession::with_config(tls_config(false), false);
    test.feed(b"capa\n");
    assert_eq!(test.text(), format!("{}{CAPA_ALL}", greeting()));
    // On a TLS port (995) there is nothing to start.
    let mut test = TestSession::with_config(tls_config(true), true);
    test.feed(b"CAPA\r\n");
    assert_eq!(test.take_text(), format!("{}{CAPA_NO_STLS}", greeting()));
    assert!(test.session.tls_active());
}

#[test]
fn user_and_pass() {
    let mut test = run(LOGIN);
    assert_eq!(test.take_text(), format!("{}{LOGGED_IN}", greeting()));
    assert_eq!(test.take_requests(), [login_event(USER, PASSWORD)]);
    assert!(test.session.is_transaction());
    assert_eq!(test.session.user(), Some(USER));
}

#[test]
fn user_names_are_folded_to_the_inbox_and_passwords_kept_whole() {
    let mut test = run(b"USER Alice@Example.TEST\r\nPASS  se cret \r\n");
    assert_eq!(
        test.take_requests(),
        [login_event("alice@example.test", " se cret ")]
    );
    // The fake caller only knows "secret".
    assert!(
        test.text()
            .ends_with("+OK Send PASS\r\n-ERR [AUTH] Invalid login\r\n")
    );
    assert_eq!(test.session.user(), None);
}

#[test]
fn refused_logins() {
    let cases: &[(&[u8], &str)] = &[
        (b"PASS secret\r\n", "-ERR send USER first\r\n"),
        (
            b"USER alice@example.test\r\nPASS wrong\r\nPASS secret\r\n",
            "+OK Send PASS\r\n-ERR [AUTH] Invalid login\r\n-ERR send USER first\r\n",
        ),
        (
            b"USER busy@example.test\r\nPASS x\r\n",
            "+OK Send PASS\r\n-ERR [SYS/TEMP] Login not possible now, try again later\r\n",
        ),
        (
            b"USER locked@example.test\r\nPASS x\r\n",
            "+OK Send PASS\r\n-ERR [IN-USE] Maildrop already in use\r\n",
        ),
        (b"USER\r\n", "-ERR USER needs a name\r\n"),
        (
            b"USER alice@example.test\r\nPASS\r\n",
            "+OK Send PASS\r\n-ERR PASS needs a password\r\n",
        ),
        // UTS-46 refuses a label that starts with a combining mark.
        (
            "USER u@\u{300}a.example.test\r\n".as_bytes(),
            "-ERR [AUTH] name is not a valid address\r\n",
        ),
        (b"USER a b\r\n", "-ERR too many arguments\r\n"),
        (b"APOP alice 0123abcd\r\n", "-ERR unknown command\r\n"),
    ];
    for (input, expected) in cases {
        let test = run(input);
        assert_eq!(
            test.text(),
            format!("{}{expected}", greeting()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert!(!test.session.is_transaction());
        assert_eq!(test.ended, None);
    }
}

#[test]
fn third_refused_login_closes() {
    let mut test = run(b"USER bob@example.test\r\nPASS a\r\nUSER busy@example.test\r\nPASS b\r\n");
    assert_eq!(test.ended, None);
    test.feed(b"AUTH PLAIN AGJvYkBleGFtcGxlLnRlc3QAYw==\r\nNOOP\r\n");
    assert_eq!(
        test.text(),
        format!(
            "{}+OK Send PASS\r\n-ERR [AUTH] Invalid login\r\n\
             +OK Send PASS\r\n-ERR [SYS/TEMP] Login not possible now, try again later\r\n\
             -ERR [AUTH] Invalid login\r\n",
            greeting()
        )
    );
    assert_eq!(test.ended, Some(Event::Close));
    assert_eq!(
        test.take_requests(),
        [
            login_event("bob@example.test", "a"),
            login_event(BUSY_USER, "b"),
            login_event("bob@example.test", "c"),
        ]
    );
    // The ended session consumes and writes nothing more.
    let mut out = Vec::new();
    assert_eq!(
        test.session.advance(b"NOOP\r\n", &mut out),
        (0, Event::Close)
    );
    assert!(out.is_empty());
}

#[test]
fn auth_plain_with_initial_response() {
    let response = plain_response("", USER, PASSWORD);
    let mut test = run(format!("AUTH PLAIN {response}\r\nSTAT\r\n").as_bytes());
    assert_eq!(
        test.take_text(),
        format!(
            "{}+OK Logged in, maildrop has 3 messages (121 octets)\r\n+OK 3 121\r\n",
            greeting()
        )
    );
    assert_eq!(test.take_requests(), [login_event(USER, PASSWORD)]);
    // The authorization identity may name the same inbox, in any spelling.
    let response = plain_response("ALICE@example.test", USER, PASSWORD);
    let test = run(format!("auth plain {response}\r\n").as_bytes());
    assert!(test.session.is_transaction());
}

#[test]
fn auth_plain_with_continuation() {
    let response = plain_response("", USER, PASSWORD);
    let mut test = run(format!("AUTH PLAIN\r\n{response}\r\n").as_bytes());
    assert_eq!(
        test.take_text(),
        format!(
            "{}+ \r\n+OK Logged in, maildrop has 3 messages (121 octets)\r\n",
            greeting()
        )
    );
    assert_eq!(test.take_requests(), [login_event(USER, PASSWORD)]);
}

#[test]
fn auth_errors_and_cancel() {
    let mismatch = plain_response("bob@example.test", USER, PASSWORD);
    let wrong = plain_response("", USER, "wrong");
    let cases: Vec<(String, &str)> = vec![
        (
            "AUTH\r\n".into(),
            "+OK Supported SASL mechanisms follow\r\nPLAIN\r\n.\r\n",
        ),
        (
            "AUTH LOGIN\r\n".into(),
            "-ERR unsupported SASL mechanism, only PLAIN is offered\r\n",
        ),
        (
            "AUTH PLAIN\r\n*\r\nNOOP\r\n".into(),
            "+ \r\n-ERR authentication cancelled\r\n-ERR command only valid after login\r\n",
        ),
        (
            "AUTH PLAIN =\r\n".into(),
            "-ERR malformed SASL PLAIN response\r\n",
        ),
        (
            "AUTH PLAIN\r\n\r\n".into(),
            "+ \r\n-ERR malformed SASL PLAIN response\r\n",
        ),
        (
            "AUTH PLAIN\r\n=\r\n".into(),
            "+ \r\n-ERR invalid base64 in SASL response\r\n",
        ),
        (
            "AUTH PLAIN Zm9v!\r\n".into(),
            "-ERR invalid base64 in SASL response\r\n",
        ),
        (
            "AUTH PLAIN\r\nAGFsaWNl\tAA==\r\n".into(),
            "+ \r\n-ERR control character in command line\r\n",
        ),
        (
            format!("AUTH PLAIN {mismatch}\r\n"),
            "-ERR [AUTH] authorization identity must be empty or equal the authentication identity\r\n",
        ),
        (
            format!("AUTH PLAIN\r\n{wrong}\r\n"),
            "+ \r\n-ERR [AUTH] Invalid login\r\n",
        ),
        // USER is forgotten by AUTH.
        (
            "USER alice@example.test\r\nAUTH PLAIN\r\n*\r\nPASS secret\r\n".into(),
            "+OK Send PASS\r\n+ \r\n-ERR authentication cancelled\r\n-ERR send USER first\r\n",
        ),
    ];
    for (input, expected) in cases {
        let test = run(input.as_bytes());
        assert_eq!(
            test.text(),
            format!("{}{expected}", greeting()),
            "{input:?}"
        );
        assert!(!test.session.is_transaction());
    }
}

#[test]
fn tls_required_refuses_plaintext_logins() {
    let mut test = TestSession::with_config(tls_config(true), false);
    let response = plain_response("", USER, PASSWORD);
    test.feed(
        format!("CAPA\r\nUSER {USER}\r\nPASS {PASSWORD}\r\nAUTH PLAIN {response}\r\nAUTH\r\n")
            .as_bytes(),
    );
    assert_eq!(
        test.take_text(),
        format!(
            "{}{CAPA_NO_LOGINS}{}",
            greeting(),
            PLAINTEXT_DISALLOWED.repeat(4)
        )
    );
    assert!(test.take_requests().is_empty());
    // After STLS the same commands work, and CAPA lists them.
    test.feed(b"STLS\r\n");
    assert_eq!(test.take_text(), "+OK Begin TLS negotiation\r\n");
    assert_eq!(test.take_requests(), [Event::StartTls]);
    assert!(test.session.tls_active());
    test.feed(format!("CAPA\r\nAUTH PLAIN {response}\r\n").as_bytes());
    assert_eq!(
        test.take_text(),
        format!("{CAPA_NO_STLS}+OK Logged in, maildrop has 3 messages (121 octets)\r\n")
    );
    assert_eq!(test.take_requests(), [login_event(USER, PASSWORD)]);
}

#[test]
fn stls_consumes_its_own_line_only() {
    let mut session = Session::new(Rc::new(tls_config(false)), false);
    let mut out = Vec::new();
    // The injected CAPA stays in the caller's hands, and the caller drops it.
    let input = b"USER alice@example.test\r\nSTLS\r\nCAPA\r\n";
    assert_eq!(
        session.advance(input, &mut out),
        (input.len() - b"CAPA\r\n".len(), Event::StartTls)
    );
    assert_eq!(out, b"+OK Send PASS\r\n+OK Begin TLS negotiation\r\n");
    session.tls_started();
    out.clear();
    // What USER said in the clear is forgotten; STLS is no longer offered.
    let input = b"PASS secret\r\nSTLS\r\nCAPA\r\n";
    assert_eq!(
        session.advance(input, &mut out),
        (input.len(), Event::NeedInput)
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("-ERR send USER first\r\n-ERR TLS already active\r\n{CAPA_NO_STLS}")
    );
}

#[test]
fn stls_when_not_offered_or_after_login() {
    let test = run(b"STLS\r\n");
    assert_eq!(
        test.text(),
        format!("{}-ERR STLS not available\r\n", greeting())
    );
    let mut test = TestSession::with_config(tls_config(false), false);
    test.feed(LOGIN).feed(b"STLS\r\n");
    assert!(
        test.text()
            .ends_with("(121 octets)\r\n-ERR command not valid after login\r\n")
    );
    assert!(!test.session.tls_active());
}

#[test]
fn transaction_commands_need_a_login_and_quit_ends() {
    let test = run(
        b"STAT\r\nLIST\r\nUIDL 1\r\nRETR 1\r\nTOP 1 0\r\nDELE 1\r\nNOOP\r\nRSET\r\n\
          QUIT\r\nNOOP\r\n",
    );
    assert_eq!(
        test.text(),
        format!(
            "{}{}+OK {HOSTNAME} Mayfly POP3 signing off\r\n",
            greeting(),
            "-ERR command only valid after login\r\n".repeat(8)
        )
    );
    assert_eq!(test.ended, Some(Event::Quit));
}

#[test]
fn an_unanswered_login_is_refused_as_temporary() {
    let mut session = Session::new(Rc::new(config()), false);
    let mut out = Vec::new();
    let (n_consumed, event) = session.advance(LOGIN, &mut out);
    assert_eq!(n_consumed, LOGIN.len());
    assert_eq!(event, login_event(USER, PASSWORD));
    assert_eq!(
        session.advance(b"NOOP\r\n", &mut out),
        (6, Event::NeedInput)
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "+OK Send PASS\r\n-ERR [SYS/TEMP] Login not possible now, try again later\r\n\
         -ERR command only valid after login\r\n"
    );
}

#[test]
fn login_event_debug_hides_the_password() {
    let text = format!("{:?}", login_event(USER, "hunter2"));
    assert_eq!(
        text,
        "Login { user: \"alice@example.test\", password: \"<redacted>\" }"
    );
}
