//! Spam verdicts from a real rspamd (`--rspamd`), through the real binary.
//!
//! Each test starts its own rspamd 3.4 (Debian package `rspamd`; `tests/run.sh` installs
//! it) in the foreground with a private config in a temporary directory: the stock rules,
//! one normal worker on 127.0.0.1 and a free port, its DNS pointed at a loopback port
//! where nothing answers (so its network rules fail fast and nothing leaves the machine),
//! no redis. GTUBE is rspamd's built-in test pattern: it scores 15 with action `reject`.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod common;

use common::Server;

/// rspamd's GTUBE line: any message with it scores 15, action `reject`.
const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// How long rspamd may take to load its rules and answer `/ping`.
const RSPAMD_START_WAIT_MAX: Duration = Duration::from_secs(30);

#[test]
fn every_message_gets_a_verdict_in_headers_and_json() {
    let rspamd = Rspamd::start();
    let server = Server::start(&["--rspamd", &rspamd.url(), "--rspamd-timeout", "10s"]);
    let mut smtp = server.smtp_ehlo();
    // A sender's own claims come off: ours are the only X-Spam-* fields a reader sees.
    let ordinary = b"X-Spam-Status: No, score=-100.00 required=15.00\r\nX-Spam-Flag: NO\r\n\
        From: Alice <alice@sender.test>\r\nTo: bob@mayfly.test\r\nSubject: lunch\r\n\
        Message-ID: <1@sender.test>\r\nDate: Sat, 05 Dec 2026 10:00:00 +0000\r\n\r\n\
        See you at noon.\r\n";
    smtp.send_mail("alice@sender.test", &["bob@mayfly.test"], ordinary);
    let gtube = format!("From: spam@sender.test\r\nSubject: win\r\n\r\n{GTUBE}\r\n");
    smtp.send_mail("spam@sender.test", &["bob@mayfly.test"], gtube.as_bytes());
    let listing = server.wait_inbox_total("bob@mayfly.test", 2);

    let id = listing["messages"][1]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let text = String::from_utf8(server.raw("bob@mayfly.test", &id)).expect("text");
    assert!(text.starts_with("X-Spam-Status: No, score="), "{text}");
    let ours_end = text.find("\r\nReceived: ").expect("our Received header");
    assert!(text[..ours_end].contains("\r\nX-Spam-Action: "), "{text}");
    assert!(text[..ours_end].contains("\r\nX-Spam-Symbols: "), "{text}");
    assert_eq!(text.matches("X-Spam-Status:").count(), 1, "{text}");
    assert!(!text.contains("X-Spam-Flag"), "{text}");
    assert!(!text.contains("127.0.0.1"), "no client address: {text}");
    let message = server
        .get(&format!(
            "{}/messages/{id}",
            common::inbox_path("bob@mayfly.test")
        ))
        .json();
    let spam = &message["spam"];
    assert!(spam["score"].as_f64().expect("score") < 15.0, "{spam}");
    assert_eq!(spam["required_score"], 15.0);
    assert_eq!(spam["is_spam"], false);
    assert!(spam["action"].is_string(), "{spam}");
    assert!(!spam["symbols"].as_array().expect("symbols").is_empty());

    // Without --spam-reject-score GTUBE is stored, marked.
    let id = listing["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let message = server
        .get(&format!(
            "{}/messages/{id}",
            common::inbox_path("bob@mayfly.test")
        ))
        .json();
    assert_eq!(message["spam"]["action"], "reject");
    assert_eq!(message["spam"]["is_spam"], true);
    assert!(message["spam"]["score"].as_f64().expect("score") >= 15.0);
    assert_eq!(server.metric_total("mayfly_spam_checks_total"), 2);
    assert_eq!(server.metric_total("mayfly_spam_check_failures_total"), 0);
}

#[test]
fn mail_at_the_reject_score_gets_550_and_is_not_stored() {
    let rspamd = Rspamd::start();
    let server = Server::start(&[
        "--rspamd",
        &rspamd.url(),
        "--rspamd-timeout",
        "10s",
        "--spam-reject-score",
        "15",
    ]);
    let mut smtp = server.smtp_ehlo();
    smtp.expect("MAIL FROM:<spam@sender.test>", "250");
    smtp.expect("RCPT TO:<carol@mayfly.test>", "250");
    smtp.expect("DATA", "354");
    smtp.send(format!("Subject: win\r\n\r\n{GTUBE}\r\n.\r\n").as_bytes());
    smtp.read_reply()
        .assert_starts("550 5.7.1 Message rejected as spam");
    // The session goes on: the next message is scored low and stored.
    smtp.send_mail(
        "alice@sender.test",
        &["carol@mayfly.test"],
        b"From: alice@sender.test\r\nSubject: hi\r\n\r\nhello\r\n",
    );
    let listing = server.wait_inbox_total("carol@mayfly.test", 1);
    assert_eq!(listing["messages"][0]["subject"], "hi");
    assert_eq!(server.metric_total("mayfly_spam_rejected_total"), 1);
    let metrics = server.metrics();
    assert!(
        metrics.contains("mayfly_smtp_rejections_total{reason=\"spam\"} 1"),
        "{metrics}"
    );
}

#[test]
fn intake_goes_on_when_rspamd_stops_or_hangs() {
    let mut rspamd = Rspamd::start();
    let server = Server::start(&["--rspamd", &rspamd.url(), "--rspamd-timeout", "10s"]);
    let mut smtp = server.smtp_ehlo();
    smtp.send_mail(
        "a@sender.test",
        &["dave@mayfly.test"],
        b"Subject: 1\r\n\r\none\r\n",
    );
    server.wait_inbox_total("dave@mayfly.test", 1);
    assert_eq!(server.metric_total("mayfly_spam_checks_total"), 1);

    // rspamd goes away mid-run: every message is still accepted, without a verdict.
    rspamd.stop();
    for idx in 0..10 {
        smtp.send_mail(
            "a@sender.test",
            &["dave@mayfly.test"],
            format!("Subject: after {idx}\r\n\r\nbody\r\n").as_bytes(),
        );
    }
    let listing = server.wait_inbox_total("dave@mayfly.test", 11);
    let newest = listing["messages"][0]["id"].as_str().expect("id");
    let message = server
        .get(&format!(
            "{}/messages/{newest}",
            common::inbox_path("dave@mayfly.test")
        ))
        .json();
    assert!(message.get("spam").is_none(), "{message}");
    assert_eq!(server.metric_total("mayfly_spam_check_failures_total"), 10);

    // An "rspamd" that accepts and never answers: the message waits --rspamd-timeout,
    // then is stored without a verdict.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}", silent.local_addr().expect("addr"));
    let server = Server::start(&["--rspamd", &silent_url, "--rspamd-timeout", "300ms"]);
    let mut smtp = server.smtp_ehlo();
    smtp.send_mail(
        "a@sender.test",
        &["erin@mayfly.test"],
        b"Subject: x\r\n\r\nx\r\n",
    );
    server.wait_inbox_total("erin@mayfly.test", 1);
    assert_eq!(server.metric_total("mayfly_spam_check_failures_total"), 1);
    drop(silent);
}

/// A private rspamd; killed and cleaned up when dropped.
struct Rspamd {
    child: Option<Child>,
    addr: SocketAddr,
    /// Its config, state and log, kept across start attempts; removed after it stops.
    dir: common::ScratchDir,
}

impl Rspamd {
    fn start() -> Rspamd {
        let mut rspamd = Rspamd {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: common::ScratchDir::new("rspamd"),
        };
        let dir = rspamd.dir.path().to_path_buf();
        // rspamd drops privileges when started as root: its user must write here.
        set_mode(&dir, 0o777);
        let dead_dns = free_port();
        // rspamd compiles its rules' regular expressions (hyperscan) at start, some 10 s
        // of CPU, and caches them: one cache for every test of the run, filled by the
        // first start while the others wait for it.
        let hs_cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rspamd-hs-cache");
        std::fs::create_dir_all(&hs_cache).expect("cache dir");
        set_mode(&hs_cache, 0o777);
        static STARTING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STARTING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for _attempt in 0..5 {
            let port = free_port();
            let config = format!(
                ".include \"$CONFDIR/common.conf\"\n\
                 options {{\n\
                 \x20   pidfile = \"{dir}/rspamd.pid\";\n\
                 \x20   filters = \"chartable,dkim,regexp,fuzzy_check\";\n\
                 \x20   explicit_modules = [\"settings\", \"bayes_expiry\"];\n\
                 \x20   cache_file = \"{dir}/symbols.cache\";\n\
                 \x20   dynamic_conf = \"{dir}/rspamd_dynamic\";\n\
                 \x20   history_file = \"{dir}/rspamd.history\";\n\
                 \x20   stats_file = \"{dir}/stats.ucl\";\n\
                 \x20   control_socket = \"{dir}/rspamd.sock mode=0600\";\n\
                 \x20   tempdir = \"{dir}\";\n\
                 \x20   url_tld = \"${{SHAREDIR}}/effective_tld_names.dat\";\n\
                 \x20   allow_raw_input = true;\n\
                 \x20   task_timeout = 8s;\n\
                 \x20   hs_cache_dir = \"{hs_cache}/\";\n\
                 \x20   dns {{ nameserver = [\"127.0.0.1:{dead_dns}\"]; timeout = 0.2s; retransmits = 1; }}\n\
                 }}\n\
                 logging {{ type = \"file\"; filename = \"{dir}/rspamd.log\"; level = \"error\"; }}\n\
                 worker \"normal\" {{\n\
                 \x20   bind_socket = \"127.0.0.1:{port}\";\n\
                 \x20   .include \"$CONFDIR/worker-normal.inc\"\n\
                 \x20   count = 1;\n\
                 }}\n",
                dir = dir.display(),
                hs_cache = hs_cache.display(),
            );
            let config_path = dir.join("rspamd.conf");
            std::fs::write(&config_path, config).expect("config");
            let mut command = Command::new("rspamd");
            command
                .arg("-c")
                .arg(&config_path)
                .args(["-f", "--insecure"]);
            for var in ["DBDIR", "RUNDIR"] {
                command.arg("--var").arg(format!("{var}={}", dir.display()));
            }
            if is_root() {
                command.args(["-u", "_rspamd", "-g", "_rspamd"]);
            }
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|error| {
                    panic!("cannot start rspamd ({error}): `apt-get install -y rspamd` (tests/run.sh does it)")
                });
            rspamd.child = Some(child);
            rspamd.addr = SocketAddr::from(([127, 0, 0, 1], port));
            if rspamd.wait_ready() {
                return rspamd;
            }
            rspamd.stop();
        }
        let log = std::fs::read_to_string(dir.join("rspamd.log")).unwrap_or_default();
        panic!("rspamd did not start; its log:\n{log}");
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Polls `/ping` until rspamd answers `pong`, or it exits, or time runs out.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + RSPAMD_START_WAIT_MAX;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if let Ok(mut conn) = std::net::TcpStream::connect(self.addr) {
                use std::io::{Read, Write};
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = conn.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = conn.read_to_string(&mut reply);
                if reply.contains("pong") {
                    return true;
                }
            }
            std::thread::sleep(common::POLL_INTERVAL);
        }
        false
    }

    /// Kills rspamd's main process and its worker (the worker is told by its parent's
    /// death; a SIGTERM to the group would do the same more slowly).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we own; no memory is involved.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let _ = child.wait();
            // The main process waits for its workers before it exits, so the port is free
            // now; check, since a test relies on rspamd being gone.
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(self.addr).is_ok() && Instant::now() < deadline {
                std::thread::sleep(common::POLL_INTERVAL);
            }
        }
    }
}

impl Drop for Rspamd {
    /// Stops rspamd before `dir` goes.
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
