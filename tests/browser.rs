//! The web page, end to end, in a real browser: the real binary serves it, headless
//! Chromium (Debian's `/usr/bin/chromium`, driven by `tests/browser/e2e.mjs` through
//! playwright-core) uses it, and this test sends the mail with lettre while the page is
//! watching the inbox.
//!
//! The script runs twice: against a server as most are, and against one with
//! `--private-inboxes`, where the page must carry each inbox's token (kept in the URL
//! fragment) on every request; the other checks hold either way.
//! The script prints `MAYFLY-E2E address=<address>` once the page made an address and is
//! live; this test then sends a rich message (text and HTML, an inline `cid:` image, an
//! attachment, and hostile script that must not run) and a text-only one, and waits for
//! the script's verdict. The subjects, phrases and attachment are named in both files.
//!
//! Chromium and `tests/browser/node_modules` are installed by `tests/run.sh`. When they are
//! missing this test fails and says so; `MAYFLY_SKIP_BROWSER=1` skips it on purpose.
//! `MAYFLY_BROWSER_SCREENSHOTS=<dir>` keeps the screenshots (`docs/` holds the ones the
//! README shows).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::{Message, SmtpTransport, Transport};

use common::Server;

/// Set to `1` to skip this test (say, on a machine without a browser).
const SKIP_ENV: &str = "MAYFLY_SKIP_BROWSER";
/// A directory to keep the screenshots in.
const SCREENSHOTS_ENV: &str = "MAYFLY_BROWSER_SCREENSHOTS";
/// Overrides the browser the script starts.
const CHROMIUM_ENV: &str = "CHROMIUM";
const CHROMIUM_DEFAULT: &str = "/usr/bin/chromium";
/// The whole script may take this long (it has a shorter watchdog of its own).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// What the script prints when it wants the mail.
const ADDRESS_LINE_PREFIX: &str = "MAYFLY-E2E address=";
const DOMAIN: &str = "example.test";

// The two messages; `tests/browser/e2e.mjs` looks for these words.
const RICH_SUBJECT: &str = "Welcome aboard: confirm your address";
const RICH_SENDER: &str = "hello@shop.test";
const ATTACHMENT_NAME: &str = "report.txt";
const ATTACHMENT_TEXT: &str = "Quarterly numbers\nrevenue 42\ncosts 17\n";
const TEXT_SUBJECT: &str = "Your login code is 493817";
const INLINE_CONTENT_ID: &str = "logo@shop.test";
/// The inline image: the page's own icon, a real PNG.
const INLINE_PNG: &[u8] = include_bytes!("../src/http/page/icon-192.png");

const RICH_TEXT: &str = "Thanks for signing up at Example Shop.\r\n\
    This is the plain-text version of this welcome.\r\n\
    Confirm your address: https://shop.test/confirm?token=8f2c1e\r\n";

/// The HTML part: a typical sign-up mail plus things the page must neutralise (a script,
/// an event handler, a remote tracking pixel). `e2ePwned` is what the script checks.
const RICH_HTML: &str = r##"<div style="max-width: 560px; font-family: Georgia, serif">
<p><img src="cid:logo@shop.test" alt="Example logo" width="64" height="64"></p>
<h1 style="color: #0f766e; font-size: 26px">Welcome aboard!</h1>
<p>Thanks for signing up at Example Shop. Please confirm that this address is yours:</p>
<p><a href="https://shop.test/confirm?token=8f2c1e" style="background-color: #0f766e; color: #ffffff; padding: 10px 18px; border-radius: 6px; text-decoration: none; display: inline-block">Confirm my address</a></p>
<p style="color: #5b6768; font-size: 13px">Did not sign up? Ignore this mail: it disappears with the inbox.</p>
<script>parent.e2ePwned = "script"; alert("script ran");</script>
<img src="x" onerror="parent.e2ePwned = 'onerror'; alert('handler ran')" alt="">
<img src="http://127.0.0.1:9/pixel.gif" alt="tracker" width="1" height="1">
</div>
"##;

const TEXT_BODY: &str = "Use 493817 to sign in. The code is valid for 10 minutes.\r\n";

#[test]
fn the_page_shows_live_mail_safely_in_chromium() {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("browser test skipped: {SKIP_ENV}=1");
        return;
    }
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var(CHROMIUM_ENV).unwrap_or_else(|_| CHROMIUM_DEFAULT.into());
    check_prerequisites(&browser_dir, &chromium);

    // One run as most servers are, then one with private inboxes, where the page must
    // carry each inbox's token everywhere (one after the other: two browsers at once are
    // too much for a small machine).
    for private_inboxes in [false, true] {
        run_script(&browser_dir, &chromium, private_inboxes);
    }
}

/// Starts a server and runs `e2e.mjs` against it (with `--private` for private inboxes).
fn run_script(browser_dir: &Path, chromium: &str, private_inboxes: bool) {
    // Sender checks on, against a DNS server that never answers: every check ends as
    // temperror after --auth-timeout, which the page shows as one badge per check.
    let silent_dns = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    let resolver = silent_dns.local_addr().expect("addr").to_string();
    let mut args = vec![
        "--domain",
        DOMAIN,
        "--verify-senders",
        "annotate",
        "--dns-resolver",
        &resolver,
        "--auth-timeout",
        "300ms",
    ];
    if private_inboxes {
        args.push("--private-inboxes");
    }
    let server = Server::start(&args);
    let url = format!("http://{}", server.http_addr);
    let mut command = Command::new("node");
    command
        .arg(browser_dir.join("e2e.mjs"))
        .arg(&url)
        .env(CHROMIUM_ENV, chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if private_inboxes {
        command.arg("--private");
    } else if let Some(dir) = std::env::var_os(SCREENSHOTS_ENV) {
        command.arg("--screenshots").arg(dir);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start node: {error}"));
    let run = watch_script(&mut child, &server);
    assert!(
        run.mail_sent,
        "the script never asked for mail ({ADDRESS_LINE_PREFIX}...):\n{}",
        run.describe()
    );
    assert!(
        run.passed,
        "the browser test failed:\n{}\n(server log follows if the test panics)",
        run.describe()
    );
    eprintln!("{}", run.describe());
}

/// Fails with instructions when something the script needs is not installed.
fn check_prerequisites(browser_dir: &Path, chromium: &str) {
    let fix = format!(
        "run tests/run.sh (it installs chromium and runs `npm ci` in tests/browser), \
         or set {SKIP_ENV}=1 to skip the browser test"
    );
    assert!(
        Path::new(chromium).exists(),
        "no browser at {chromium}: {fix}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|output| output.status.success()),
        "`node --version` failed ({node:?}): install Node.js 20 or later, or set {SKIP_ENV}=1"
    );
    let playwright: PathBuf = browser_dir.join("node_modules/playwright-core/package.json");
    assert!(
        playwright.exists(),
        "{} is missing: {fix}",
        playwright.display()
    );
}

/// What the script did.
struct ScriptRun {
    transcript: String,
    stderr: String,
    mail_sent: bool,
    passed: bool,
}

impl ScriptRun {
    fn describe(&self) -> String {
        format!(
            "--- e2e.mjs stdout ---\n{}--- e2e.mjs stderr ---\n{}--- end ---",
            self.transcript, self.stderr
        )
    }
}

/// Reads the script's output until it exits (or `SCRIPT_TIMEOUT`, then kills it), and
/// sends the mail when it asks.
fn watch_script(child: &mut Child, server: &Server) -> ScriptRun {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (line_sender, lines) = mpsc::channel::<String>();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line_sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stderr_thread = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });

    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let mut run = ScriptRun {
        transcript: String::new(),
        stderr: String::new(),
        mail_sent: false,
        passed: false,
    };
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        match lines.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                run.transcript.push_str(&line);
                run.transcript.push('\n');
                if let Some(address) = line.strip_prefix(ADDRESS_LINE_PREFIX) {
                    assert!(!run.mail_sent, "the script asked for mail twice");
                    send_mail(server, address.trim());
                    run.mail_sent = true;
                    run.transcript
                        .push_str("(browser.rs: both messages sent)\n");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Stdout closed: the script is exiting.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = if timed_out {
        let _ = child.kill();
        let _ = child.wait();
        None
    } else {
        loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(common::POLL_INTERVAL),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        }
    };
    run.stderr = stderr_thread.join().unwrap_or_default();
    match status {
        Some(status) => {
            run.passed = status.success();
            run.transcript
                .push_str(&format!("(browser.rs: e2e.mjs exited with {status})\n"));
        }
        None => run.transcript.push_str(&format!(
            "(browser.rs: e2e.mjs killed after {SCRIPT_TIMEOUT:?})\n"
        )),
    }
    run
}

fn send_mail(server: &Server, address: &str) {
    assert!(
        address.ends_with(&format!("@{DOMAIN}")),
        "the page made an address on another domain: {address:?}"
    );
    let transport = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.smtp_port())
        .timeout(Some(common::IO_TIMEOUT))
        .build();
    for message in [rich_message(address), text_message(address)] {
        let response = transport
            .send(&message)
            .unwrap_or_else(|error| panic!("lettre send to {address} failed: {error}"));
        assert_eq!(response.code().to_string(), "250");
    }
}

fn mailbox(text: &str) -> Mailbox {
    text.parse()
        .unwrap_or_else(|error| panic!("bad test mailbox {text:?}: {error}"))
}

/// multipart/mixed: (alternative: text, related: (html, inline png)), attachment.
fn rich_message(address: &str) -> Message {
    let inline = Attachment::new_inline(INLINE_CONTENT_ID.into()).body(
        INLINE_PNG.to_vec(),
        ContentType::parse("image/png").expect("image/png"),
    );
    // Base64 keeps the attachment's bytes exact (no line-end conversion on the way).
    let attachment = Attachment::new(ATTACHMENT_NAME.into()).body(
        Body::new_with_encoding(
            ATTACHMENT_TEXT.as_bytes().to_vec(),
            ContentTransferEncoding::Base64,
        )
        .expect("base64 takes any bytes"),
        ContentType::TEXT_PLAIN,
    );
    Message::builder()
        .from(mailbox(&format!("Example Shop <{RICH_SENDER}>")))
        .to(mailbox(address))
        .subject(RICH_SUBJECT)
        .multipart(
            MultiPart::mixed()
                .multipart(
                    MultiPart::alternative()
                        .singlepart(SinglePart::plain(RICH_TEXT.to_string()))
                        .multipart(
                            MultiPart::related()
                                .singlepart(SinglePart::html(RICH_HTML.to_string()))
                                .singlepart(inline),
                        ),
                )
                .singlepart(attachment),
        )
        .expect("the rich test message builds")
}

fn text_message(address: &str) -> Message {
    Message::builder()
        .from(mailbox("Example Shop <login@shop.test>"))
        .to(mailbox(address))
        .subject(TEXT_SUBJECT)
        .body(TEXT_BODY.to_string())
        .expect("the text test message builds")
}
