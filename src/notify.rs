//! Readiness and stopping notifications to systemd (`sd_notify(3)`), without libsystemd.
//!
//! Under a `Type=notify` unit, systemd puts the path of a datagram socket in
//! `$NOTIFY_SOCKET` and waits for `READY=1` on it before it counts the service as started
//! (and before units ordered after it start). The protocol is one datagram of
//! newline-separated `KEY=value` assignments, so a few lines of `std` do what the C library
//! does for us; no crate is needed. The socket is either a filesystem path (`/run/...`) or,
//! when the value starts with `@`, a name in Linux's abstract socket namespace.
//!
//! When `$NOTIFY_SOCKET` is not set (not started by systemd, or not `Type=notify`), every
//! function here does nothing and returns `Ok(false)`, so the binary behaves the same
//! under systemd, in a container, or in a terminal.
//!
//! The wrappers that read the environment ([`ready`], [`stopping`]) are one line each; the
//! work is in [`send`] and [`ready_message`], which take everything as arguments so tests
//! never change the process-wide environment.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable in which systemd passes the notification socket.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";
/// What [`stopping`] sends: the service has begun to shut down (shown by `systemctl status`).
pub const STOPPING_MESSAGE: &str = "STOPPING=1";
/// Longest `STATUS=` text sent; longer text is cut at a character boundary. systemd reads
/// notifications into a buffer of a few KiB and drops what does not fit.
pub const STATUS_BYTES_MAX: usize = 1024;

/// Tells systemd that the service is ready, with a one-line status for `systemctl status`.
///
/// Call it once every listener is bound and every executor serves, not before: systemd
/// starts units ordered after Mayfly as soon as this arrives.
/// Returns `Ok(false)` when `$NOTIFY_SOCKET` is not set (not running under systemd).
///
/// # Errors
/// `$NOTIFY_SOCKET` is set but malformed, or the datagram could not be sent. The service
/// still works; systemd will time the start-up out and act on `TimeoutStartSec=`.
pub fn ready(status: &str) -> io::Result<bool> {
    let message = ready_message(status, std::process::id());
    send(std::env::var_os(NOTIFY_SOCKET_ENV).as_deref(), &message)
}

/// Tells systemd that the service is shutting down ([`STOPPING_MESSAGE`]).
///
/// Returns `Ok(false)` when `$NOTIFY_SOCKET` is not set (not running under systemd).
///
/// # Errors
/// As for [`ready`].
pub fn stopping() -> io::Result<bool> {
    send(
        std::env::var_os(NOTIFY_SOCKET_ENV).as_deref(),
        STOPPING_MESSAGE,
    )
}

/// The `READY=1` notification: `READY=1\nSTATUS=<status>\nMAINPID=<pid>`.
///
/// Line breaks in `status` become spaces (a newline would start another assignment), and
/// the status is cut to [`STATUS_BYTES_MAX`] bytes. `MAINPID` tells systemd which process
/// is the service even if the unit's `PIDFile=` or its guess say otherwise.
pub fn ready_message(status: &str, pid: u32) -> String {
    let mut status_end = status.len().min(STATUS_BYTES_MAX);
    while !status.is_char_boundary(status_end) {
        status_end -= 1;
    }
    let status: String = status[..status_end]
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    format!("READY=1\nSTATUS={status}\nMAINPID={pid}")
}

/// Sends `message` as one datagram to the notification socket named by `socket` (the value
/// of `$NOTIFY_SOCKET`). `None` means "not under systemd": nothing is sent, `Ok(false)`.
///
/// # Errors
/// `InvalidInput` if `socket` is neither an absolute path nor `@name`; otherwise the error
/// of the failed send (for example `NotFound` when the socket file does not exist).
pub fn send(socket: Option<&OsStr>, message: &str) -> io::Result<bool> {
    let Some(socket) = socket else {
        return Ok(false);
    };
    let addr = socket_addr(socket)?;
    // An unbound datagram socket per notification: Mayfly sends two in its life, so keeping
    // one open would buy nothing.
    let datagram = UnixDatagram::unbound()?;
    let sent_bytes = datagram.send_to_addr(message.as_bytes(), &addr)?;
    if sent_bytes != message.len() {
        // Datagrams are sent whole or not at all; this is a backstop, not an expected path.
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "notification truncated: {sent_bytes} of {} bytes sent",
                message.len()
            ),
        ));
    }
    Ok(true)
}

/// Parses a `$NOTIFY_SOCKET` value the way `sd_notify(3)` does: `/path` is a socket file,
/// `@name` an abstract socket; anything else, including an empty value, is refused.
fn socket_addr(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes {
        [b'/', ..] => SocketAddr::from_pathname(socket),
        [b'@', name @ ..] if !name.is_empty() => SocketAddr::from_abstract_name(name),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{NOTIFY_SOCKET_ENV}={:?} is neither an absolute path nor @name",
                socket
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::testing::TempDir;

    fn unique_name(prefix: &str) -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Receives one datagram (with a timeout, so a missing send fails instead of hanging).
    fn receive(listener: &UnixDatagram) -> Vec<u8> {
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set read timeout");
        let mut buf = vec![0u8; 8192];
        let n = listener.recv(&mut buf).expect("a notification arrives");
        buf.truncate(n);
        buf
    }

    #[test]
    fn ready_message_has_the_three_assignments() {
        let long_ascii = "x".repeat(STATUS_BYTES_MAX + 10);
        let long_multibyte = "é".repeat(STATUS_BYTES_MAX); // 2 bytes each: cut mid-way.
        let table: &[(&str, u32, String)] = &[
            (
                "serving smtp=0.0.0.0:25",
                42,
                "READY=1\nSTATUS=serving smtp=0.0.0.0:25\nMAINPID=42".to_string(),
            ),
            ("", 1, "READY=1\nSTATUS=\nMAINPID=1".to_string()),
            (
                "two\nlines\r\nMAINPID=1",
                7,
                "READY=1\nSTATUS=two lines  MAINPID=1\nMAINPID=7".to_string(),
            ),
            (
                &long_ascii,
                9,
                format!(
                    "READY=1\nSTATUS={}\nMAINPID=9",
                    "x".repeat(STATUS_BYTES_MAX)
                ),
            ),
            (
                &long_multibyte,
                9,
                format!(
                    "READY=1\nSTATUS={}\nMAINPID=9",
                    "é".repeat(STATUS_BYTES_MAX / 2)
                ),
            ),
        ];
        for (status, pid, expected) in table {
            assert_eq!(&ready_message(status, *pid), expected, "status {status:?}");
        }
    }

    #[test]
    fn socket_values_are_parsed_like_sd_notify() {
        let path_ok = |value: &[u8], expected: &str| {
            let addr = socket_addr(OsStr::from_bytes(value)).expect("valid");
            assert_eq!(
                addr.as_pathname(),
                Some(std::path::Path::new(expected)),
                "{value:?}"
            );
        };
        path_ok(b"/run/systemd/notify", "/run/systemd/notify");
        path_ok(b"/", "/");

        let abstract_ok = |value: &[u8], expected: &[u8]| {
            let addr = socket_addr(OsStr::from_bytes(value)).expect("valid");
            assert_eq!(addr.as_abstract_name(), Some(expected), "{value:?}");
        };
        abstract_ok(
            b"@/org/freedesktop/systemd1/notify/1",
            b"/org/freedesktop/systemd1/notify/1",
        );
        abstract_ok(b"@x", b"x");

        let long_path = [b"/".as_slice(), &[b'a'; 200]].concat();
        let refused: &[(&[u8], io::ErrorKind)] = &[
            (b"", io::ErrorKind::InvalidInput),
            (b"@", io::ErrorKind::InvalidInput),
            (b"run/notify", io::ErrorKind::InvalidInput),
            (b"vsock:2:1234", io::ErrorKind::InvalidInput),
            (b"/with\0nul", io::ErrorKind::InvalidInput),
            // Longer than sun_path (108 bytes).
            (&long_path, io::ErrorKind::InvalidInput),
        ];
        for (value, kind) in refused {
            let error = socket_addr(OsStr::from_bytes(value)).expect_err("refused");
            assert_eq!(error.kind(), *kind, "{value:?}");
        }
    }

    #[test]
    fn no_socket_means_nothing_sent() {
        assert!(!send(None, STOPPING_MESSAGE).expect("no error"));
    }

    #[test]
    fn sends_ready_to_a_socket_file() {
        let dir = TempDir::new("notify-test");
        let socket_path = dir.0.join("notify");
        let listener = UnixDatagram::bind(&socket_path).expect("bind");
        let message = ready_message("serving", 1234);

        let sent = send(Some(socket_path.as_os_str()), &message).expect("sent");

        assert!(sent);
        assert_eq!(receive(&listener), b"READY=1\nSTATUS=serving\nMAINPID=1234");
    }

    #[test]
    fn sends_stopping_to_an_abstract_socket() {
        let name = unique_name("mayfly-notify-test");
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let value = std::ffi::OsString::from_vec([b"@".as_slice(), name.as_bytes()].concat());

        let sent = send(Some(&value), STOPPING_MESSAGE).expect("sent");

        assert!(sent);
        assert_eq!(receive(&listener), b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let dir = TempDir::new("notify-test");
        let missing = dir.0.join("nobody-listens");
        let error = send(Some(missing.as_os_str()), STOPPING_MESSAGE).expect_err("no socket");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);

        let error = send(Some(OsStr::new("relative")), STOPPING_MESSAGE).expect_err("bad value");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
