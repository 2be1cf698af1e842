//! The real `floor-sink` binary on every runtime variant, over loopback: the runtime glue
//! moves the bytes the shared protocol code expects, pipelined or not, and the connection
//! limit holds.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const RUNTIMES: [&str; 5] = [
    "glommio",
    "monoio",
    "monoio-coop",
    "monoio-coop-flag",
    "monoio-defer",
];
/// How long a test waits for any one reply before it fails (not an ordering device).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running sink, killed when dropped.
struct Sink {
    child: Child,
    addr: String,
}

impl Sink {
    fn start(runtime: &str, connections_max: usize) -> Sink {
        Sink::start_with(runtime, connections_max, &[])
    }

    fn start_with(runtime: &str, connections_max: usize, extra: &[&str]) -> Sink {
        let mut child = Command::new(env!("CARGO_BIN_EXE_floor-sink"))
            .args([
                "--runtime",
                runtime,
                "--cpu",
                "0",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--connections-max", &connections_max.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("floor-sink starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{runtime}: unexpected first line {line:?}"))
            .trim()
            .to_string();
        Sink { child, addr }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until `n_replies` final reply lines (`NNN ` rather than `NNN-`) have arrived.
fn read_replies(stream: &mut TcpStream, n_replies: usize) -> Vec<String> {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let finals: Vec<String> = text
            .split("\r\n")
            .filter(|line| line.len() >= 4 && &line[3..4] == " ")
            .map(|line| line[..3].to_string())
            .collect();
        if finals.len() >= n_replies {
            return finals;
        }
        let n_read = stream.read(&mut buf).expect("a reply before the timeout");
        assert!(n_read > 0, "closed after {text:?}");
        text.push_str(std::str::from_utf8(&buf[..n_read]).unwrap());
    }
}

#[test]
fn every_runtime_answers_a_session_step_by_step_and_pipelined() {
    for runtime in RUNTIMES {
        let sink = Sink::start(runtime, 8);
        let mut stream = sink.connect();
        assert_eq!(read_replies(&mut stream, 1), ["220"], "{runtime}");
        for (command, code) in [
            ("EHLO c\r\n", "250"),
            ("MAIL FROM:<a@x>\r\n", "250"),
            ("RCPT TO:<b@y>\r\n", "250"),
            ("DATA\r\n", "354"),
            ("Subject: s\r\n\r\nbody\r\n.\r\n", "250"),
            ("NOOP\r\n", "250"),
        ] {
            stream.write_all(command.as_bytes()).unwrap();
            assert_eq!(
                read_replies(&mut stream, 1),
                [code],
                "{runtime} {command:?}"
            );
        }
        // Two whole transactions in one write, a body bigger than the input buffer in the
        // second: every reply comes, in order.
        let big_body = "x".repeat(78) + "\r\n";
        let pipelined = format!(
            "RSET\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhi\r\n.\r\n\
             MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n{}.\r\nQUIT\r\n",
            big_body.repeat(400)
        );
        stream.write_all(pipelined.as_bytes()).unwrap();
        assert_eq!(
            read_replies(&mut stream, 10),
            [
                "250", "250", "250", "354", "250", "250", "250", "354", "250", "221"
            ],
            "{runtime}"
        );
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{runtime}: closed after QUIT");
    }
}

#[test]
fn every_runtime_turns_away_connections_over_the_limit() {
    for runtime in RUNTIMES {
        let sink = Sink::start(runtime, 1);
        let mut first = sink.connect();
        assert_eq!(read_replies(&mut first, 1), ["220"], "{runtime}");
        let mut second = sink.connect();
        assert_eq!(read_replies(&mut second, 1), ["421"], "{runtime}");
        // Once the first one has been closed, its slot is free again.
        first.write_all(b"QUIT\r\n").unwrap();
        assert_eq!(read_replies(&mut first, 1), ["221"], "{runtime}");
        let mut rest = Vec::new();
        first.read_to_end(&mut rest).unwrap();
        drop(first);
        let mut third = sink.connect();
        let greeting = read_replies(&mut third, 1);
        assert_eq!(greeting, ["220"], "{runtime}");
    }
}

/// With `--journal`, each message's 250 comes only once a 1 KiB record of it is in the file
/// (on a real disk: O_DIRECT needs one, so not /tmp, which may be tmpfs).
#[test]
fn every_runtime_journals_each_message_before_its_250() {
    let dir = std::path::Path::new("/var/tmp");
    for runtime in [
        "glommio",
        "glommio-thread",
        "monoio",
        "monoio-coop",
        "monoio-defer",
    ] {
        let path = dir.join(format!(
            "floor-sink-test-{}-{runtime}.journal",
            std::process::id()
        ));
        let sink = Sink::start_with(runtime, 8, &["--journal", path.to_str().unwrap()]);
        let mut stream = sink.connect();
        assert_eq!(read_replies(&mut stream, 1), ["220"], "{runtime}");
        let one = "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhi\r\n.\r\n";
        stream
            .write_all(format!("EHLO c\r\n{one}{one}{one}").as_bytes())
            .unwrap();
        let replies = read_replies(&mut stream, 13);
        assert_eq!(
            replies.iter().filter(|code| *code == "354").count(),
            3,
            "{runtime}"
        );
        // The three 250s for the messages came, so their records are durable by now.
        let file = std::fs::read(&path).expect("journal file");
        assert_eq!(
            file.iter().filter(|&&b| b == b'r').count(),
            3 * 1024,
            "{runtime}"
        );
        drop(sink);
        let _ = std::fs::remove_file(&path);
    }
}
