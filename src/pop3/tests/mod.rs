//! Session tests with no socket: `TestSession` plays the socket loop, feeding bytes in
//! any chunking, answering logins, retrievals and deletions from a fake store, and
//! recording every reply. The tests proper are grouped by topic in the submodules.

mod authorization;
mod framing;
mod transaction;

use proptest::prelude::*;

use super::*;
use crate::mailbox::MailboxEntry;

const HOSTNAME: &str = "pop.example.test";
/// The one user with a password and messages.
const USER: &str = "alice@example.test";
const PASSWORD: &str = "secret";
/// A user whose logins the fake caller cannot check now (`LoginRefused::TryLater`).
const BUSY_USER: &str = "busy@example.test";
/// A user whose maildrop another session holds (`LoginRefused::InUse`).
const LOCKED_USER: &str = "locked@example.test";
/// A user with the right password and no messages.
const EMPTY_USER: &str = "empty@example.test";

/// `USER`'s messages, oldest first: dotted lines, a message without its final CRLF, and
/// one with an empty body. Sizes 54, 49 and 18 octets.
const MESSAGES: &[&[u8]] = &[
    b"Subject: one\r\n\r\nHello\r\n.dot line\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: two\r\nX-Long: y\r\n\r\nline 1\r\nline 2\r\nline 3",
    b"Subject: three\r\n\r\n",
];
/// `MESSAGES`' ids in UIDL form.
const UIDS: [&str; 3] = [
    "123456789abcd03000000000001",
    "123456789abcd03000000000002",
    "123456789abcd03000000000003",
];

const LOGIN: &[u8] = b"USER alice@example.test\r\nPASS secret\r\n";
const LOGGED_IN: &str = "+OK Send PASS\r\n+OK Logged in, maildrop has 3 messages (121 octets)\r\n";

fn config() -> SessionConfig {
    SessionConfig {
        hostname: HOSTNAME.to_string(),
        starttls_available: false,
        tls_required: false,
    }
}

fn tls_config(tls_required: bool) -> SessionConfig {
    SessionConfig {
        starttls_available: true,
        tls_required,
        ..config()
    }
}

fn id(seq: u64) -> MessageId {
    MessageId {
        boot_micros: 0x1_2345_6789_abcd,
        shard_idx: 3,
        seq,
    }
}

/// Plays the socket loop's part: buffers unconsumed input, answers what the session
/// asks from a fake store, and records everything the session writes.
struct TestSession {
    session: Session,
    pending: Vec<u8>,
    out: Vec<u8>,
    /// The fake store of `USER`'s inbox; `Update` deletes from it.
    store: Vec<(MessageId, Vec<u8>)>,
    /// Every event that asked the caller for something, in order.
    requests: Vec<Event>,
    /// `Quit` or `Close` once the session ended the connection.
    ended: Option<Event>,
    /// Makes the next `Update` fail.
    update_fails: bool,
}

impl TestSession {
    fn new() -> TestSession {
        TestSession::with_config(config(), false)
    }

    fn with_config(config: SessionConfig, tls_active: bool) -> TestSession {
        let session = Session::new(Rc::new(config), tls_active);
        let mut out = Vec::new();
        session.greeting(&mut out);
        TestSession {
            session,
            pending: Vec::new(),
            out,
            store: MESSAGES
                .iter()
                .enumerate()
                .map(|(idx, message)| (id(idx as u64 + 1), message.to_vec()))
                .collect(),
            requests: Vec::new(),
            ended: None,
            update_fails: false,
        }
    }

    /// A session logged in as `USER`, its output so far cleared.
    fn logged_in() -> TestSession {
        let mut test = TestSession::new();
        test.feed(LOGIN);
        assert!(test.session.is_transaction(), "{}", test.text());
        test.out.clear();
        test.requests.clear();
        test
    }

    /// Feeds bytes as they arrive from the client, in one read.
    fn feed(&mut self, chunk: &[u8]) -> &mut TestSession {
        self.pending.extend_from_slice(chunk);
        while self.ended.is_none() {
            let (n_consumed, event) = self.session.advance(&self.pending, &mut self.out);
            assert!(n_consumed <= self.pending.len());
            self.pending.drain(..n_consumed);
            match &event {
                Event::NeedInput => {
                    assert!(
                        self.pending.len() <= UNCONSUMED_BYTES_MAX,
                        "{} bytes left",
                        self.pending.len()
                    );
                    break;
                }
                Event::Login { user, password } => {
                    let result = self.login(user, password);
                    self.session.logged_in(result, &mut self.out);
                }
                Event::Retrieve { id, .. } => {
                    let message = self
                        .store
                        .iter()
                        .find(|(stored_id, _)| stored_id == id)
                        .map(|(_, message)| message.as_slice());
                    self.session.retrieved(message, &mut self.out);
                }
                Event::Update { delete } => {
                    let result = if self.update_fails {
                        Err(())
                    } else {
                        let n_before = self.store.len();
                        self.store.retain(|(id, _)| !delete.contains(id));
                        Ok(n_before - self.store.len())
                    };
                    self.session.updated(result, &mut self.out);
                }
                Event::StartTls => {
                    // CVE-2011-0411: nothing sent before the handshake counts.
                    self.pending.clear();
                    self.session.tls_started();
                }
                Event::Quit | Event::Close => self.ended = Some(event.clone()),
            }
            if !matches!(event, Event::Quit | Event::Close) {
                self.requests.push(event);
            }
        }
        self
    }

    fn login(&self, user: &str, password: &str) -> Result<Mailbox, LoginRefused> {
        match (user, password) {
            (USER, PASSWORD) => Ok(self.mailbox()),
            (EMPTY_USER, PASSWORD) => Ok(Mailbox::default()),
            (BUSY_USER, _) => Err(LoginRefused::TryLater),
            (LOCKED_USER, _) => Err(LoginRefused::InUse),
            _ => Err(LoginRefused::Invalid),
        }
    }

    fn mailbox(&self) -> Mailbox {
        let entries: Vec<MailboxEntry> = self
            .store
            .iter()
            .enumerate()
            .map(|(idx, (id, message))| MailboxEntry {
                id: *id,
                uid: idx as u32 + 1,
                size_bytes: message.len() as u32,
                received_at_ms: 0,
                expires_at_ms: 0,
                seen: false,
            })
            .collect();
        Mailbox {
            uid_validity: 1,
            uid_next: entries.len() as u32 + 1,
            entries,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    /// The output since the last call, cleared.
    fn take_text(&mut self) -> String {
        let text = self.text();
        self.out.clear();
        text
    }

    /// Requests since the last call, cleared.
    fn take_requests(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.requests)
    }
}

fn greeting() -> String {
    format!("+OK {HOSTNAME} Mayfly POP3 ready\r\n")
}

/// The whole output of a fresh session fed `input` in one read, greeting included.
fn run(input: &[u8]) -> TestSession {
    let mut test = TestSession::new();
    test.feed(input);
    test
}

/// What a run produced: output, requests, how it ended, and what the store kept.
type RunResult = (String, Vec<Event>, Option<Event>, Vec<(MessageId, Vec<u8>)>);

/// Runs `script` fed in the given pieces (cuts are offsets into it).
fn run_in_pieces(config: SessionConfig, script: &[u8], cuts: &[usize]) -> RunResult {
    let mut test = TestSession::with_config(config, false);
    let mut start_idx = 0;
    for &cut in cuts.iter().chain(std::iter::once(&script.len())) {
        let cut = cut.clamp(start_idx, script.len());
        test.feed(&script[start_idx..cut]);
        start_idx = cut;
    }
    let requests = test.take_requests();
    (test.text(), requests, test.ended, test.store)
}

/// The same output, requests and store whether `script` comes in one read, split at
/// any one byte, or one byte at a time.
#[track_caller]
fn assert_chunking_invariant(script: &[u8]) {
    let whole = run_in_pieces(config(), script, &[]);
    for cut in 1..script.len() {
        assert_eq!(
            run_in_pieces(config(), script, &[cut]),
            whole,
            "split at {cut} of {:?}",
            String::from_utf8_lossy(script)
        );
    }
    let every_byte: Vec<usize> = (1..script.len()).collect();
    assert_eq!(
        run_in_pieces(config(), script, &every_byte),
        whole,
        "byte by byte"
    );
}

/// A SASL PLAIN response in base64 (a test-only encoder; `sasl` checks the decoder
/// against its own model).
fn plain_response(authzid: &str, authcid: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let message = format!("{authzid}\0{authcid}\0{password}");
    let mut text = String::new();
    for chunk in message.as_bytes().chunks(3) {
        let mut triple = [0u8; 3];
        triple[..chunk.len()].copy_from_slice(chunk);
        let bits = u32::from_be_bytes([0, triple[0], triple[1], triple[2]]);
        for sextet_idx in 0..4 {
            if sextet_idx <= chunk.len() {
                let sextet = (bits >> (18 - 6 * sextet_idx)) & 0x3f;
                text.push(char::from(ALPHABET[sextet as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Pieces of POP3 streams, so random streams get past the keywords and logins.
const STREAM_PIECES: &[&[u8]] = &[
    b"USER alice@example.test\r\n",
    b"PASS secret\r\n",
    b"PASS wrong\n",
    b"AUTH PLAIN\r\n",
    b"AGFsaWNlQGV4YW1wbGUudGVzdABzZWNyZXQ=\r\n",
    b"*\r\n",
    b"CAPA\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"LIST 2\r\n",
    b"UIDL\r\n",
    b"RETR 1\r\n",
    b"TOP 2 1\n",
    b"DELE 1\r\n",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"STLS\r\n",
    b"RETR 9\r\n",
    b"\r\n",
    b"\r",
    b"\n",
    b"x",
    b".",
];
