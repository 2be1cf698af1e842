//! Cutting the input into whole commands: lines, and the literals inside them.
//!
//! imap-codec parses a command only once all of it is in hand, and tells "a literal
//! starts here" only by failing; so framing is ours. A command is lines joined by
//! literals: a line that ends in `{n}` or `{n+}` CRLF is followed by `n` octets of
//! literal data and then the rest of the command. The framer copies the command into its
//! own buffer (bounded by `COMMAND_BYTES_MAX`), so the caller never keeps input between
//! calls, and a literal split across any number of reads is put back together here.
//!
//! The framer never decides on its own whether to accept a synchronizing literal: it stops
//! and the session either sends the continuation (`accept_literal`) or refuses the command
//! (`reset`), because only the session can check the command up to the literal.

use memchr::memchr;

/// Most octets of one command, its lines and literals together (Dovecot's limit is about
/// the same). A client that sends more is disconnected: the framer would have to throw
/// away bytes whose meaning it cannot know (they may be a literal).
pub const COMMAND_BYTES_MAX: usize = 64 * 1024;
/// Largest literal accepted. Everything a client can send us fits: the longest strings
/// are passwords, search strings and header field lists.
pub const LITERAL_BYTES_MAX: usize = 64 * 1024;

/// What the framer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framed {
    /// All input was taken in; the command is not complete yet.
    NeedInput,
    /// `command()` holds one whole command, CRLF included.
    Command,
    /// `command()` holds a command up to and including a line that announces a
    /// synchronizing literal of `length_bytes`: call `accept_literal` or `reset`.
    SyncLiteral { length_bytes: u32 },
    /// The command is over `COMMAND_BYTES_MAX`, or a non-synchronizing literal is over
    /// `LITERAL_BYTES_MAX`: the connection must end.
    TooBig { literal: bool },
}

/// Collects one command at a time. Invariant: `command.len() <= COMMAND_BYTES_MAX`.
#[derive(Debug, Default)]
pub struct Framer {
    command: Vec<u8>,
    /// Literal octets still to come before the command's next line.
    literal_bytes_left: usize,
    /// A complete command was handed out and not yet `reset`.
    complete: bool,
}

impl Framer {
    /// Takes bytes from `input` until a command is complete or input runs out.
    /// Returns how many bytes were taken.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Framed) {
        if self.complete {
            self.reset();
        }
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            if self.literal_bytes_left > 0 {
                let n_bytes = self.literal_bytes_left.min(rest.len());
                self.command.extend_from_slice(&rest[..n_bytes]);
                self.literal_bytes_left -= n_bytes;
                consumed += n_bytes;
                if self.literal_bytes_left > 0 {
                    return (consumed, Framed::NeedInput);
                }
                continue;
            }
            let (n_bytes, line_ended) = match memchr(b'\n', rest) {
                Some(lf_idx) => (lf_idx + 1, true),
                None => (rest.len(), false),
            };
            if self.command.len() + n_bytes > COMMAND_BYTES_MAX {
                return (consumed, Framed::TooBig { literal: false });
            }
            self.command.extend_from_slice(&rest[..n_bytes]);
            consumed += n_bytes;
            if !line_ended {
                return (consumed, Framed::NeedInput);
            }
            match literal_announced(&self.command) {
                None => {
                    self.complete = true;
                    return (consumed, Framed::Command);
                }
                Some((length_bytes, false)) => {
                    return (consumed, Framed::SyncLiteral { length_bytes });
                }
                Some((length_bytes, true)) => {
                    let length_bytes = length_bytes as usize;
                    if length_bytes > LITERAL_BYTES_MAX
                        || self.command.len() + length_bytes > COMMAND_BYTES_MAX
                    {
                        return (consumed, Framed::TooBig { literal: true });
                    }
                    self.literal_bytes_left = length_bytes;
                }
            }
        }
    }

    /// The command collected so far.
    pub fn command(&self) -> &[u8] {
        &self.command
    }

    /// The session sent the continuation for the literal `feed` stopped at: its octets
    /// are part of the command. Returns false (and changes nothing) when the literal
    /// would take the command over the limits; the session then refuses the command.
    pub fn accept_literal(&mut self, length_bytes: u32) -> bool {
        let length_bytes = length_bytes as usize;
        if length_bytes > LITERAL_BYTES_MAX || self.command.len() + length_bytes > COMMAND_BYTES_MAX
        {
            return false;
        }
        self.literal_bytes_left = length_bytes;
        true
    }

    /// Whether part of a command has been taken in and its end has not.
    pub fn is_mid_command(&self) -> bool {
        !self.complete && !self.command.is_empty()
    }

    /// Forgets the command (done with, or refused).
    pub fn reset(&mut self) {
        self.command.clear();
        self.literal_bytes_left = 0;
        self.complete = false;
        // A big command's memory goes back; small ones keep their buffer.
        self.command.shrink_to(COMMAND_KEPT_BYTES);
    }

    /// Moves the complete command out (so the session can parse it while it changes
    /// itself) and starts the next one; hand the buffer back with `recycle`.
    pub fn take_command(&mut self) -> Vec<u8> {
        self.complete = false;
        self.literal_bytes_left = 0;
        std::mem::take(&mut self.command)
    }

    /// Takes back a buffer from `take_command`, to reuse its memory.
    pub fn recycle(&mut self, mut buffer: Vec<u8>) {
        // Commands carry passwords; the allocator wipes freed memory, this wipes reused.
        crate::alloc::wipe_if_on(&mut buffer);
        if self.command.is_empty() && buffer.capacity() <= COMMAND_KEPT_BYTES {
            buffer.clear();
            self.command = buffer;
        }
    }
}

/// Buffer capacity kept between commands.
const COMMAND_KEPT_BYTES: usize = 4 * 1024;

/// If the last line of `command` ends with a literal announcement (`{n}` or `{n+}`
/// before CRLF), its length and whether it is non-synchronizing.
fn literal_announced(command: &[u8]) -> Option<(u32, bool)> {
    let line = command.strip_suffix(b"\r\n")?;
    let line = line.strip_suffix(b"}")?;
    let (line, non_sync) = match line.strip_suffix(b"+") {
        Some(line) => (line, true),
        None => (line, false),
    };
    let open_idx = line.iter().rposition(|&b| b == b'{')?;
    let digits = &line[open_idx + 1..];
    // RFC 3501 `number`: at most 10 digits and within u32.
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let length = std::str::from_utf8(digits).ok()?.parse::<u32>().ok()?;
    Some((length, non_sync))
}

/// The tag at the start of a command line, if it is a valid one (RFC 3501 `tag`: ASTRING
/// characters except `+`).
pub fn tag_of(command: &[u8]) -> Option<&str> {
    let end = command
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    let tag = &command[..end];
    let valid = !tag.is_empty()
        && tag.iter().all(|&b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    if valid {
        std::str::from_utf8(tag).ok()
    } else {
        None
    }
}

/// The command word after the tag, uppercased (`UID` commands give `UID`), if any.
pub fn command_word(command: &[u8]) -> Option<String> {
    let start = command.iter().position(|&b| b == b' ')? + 1;
    let rest = &command[start..];
    let end = rest
        .iter()
        .position(|&b| !b.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let word = std::str::from_utf8(&rest[..end]).ok()?;
    (!word.is_empty()).then(|| word.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_announcements() {
        type Announced = Option<(u32, bool)>;
        let table: &[(&[u8], Announced)] = &[
            (b"a LOGIN {5}\r\n", Some((5, false))),
            (b"a LOGIN {5+}\r\n", Some((5, true))),
            (b"a LOGIN {0}\r\n", Some((0, false))),
            (b"a LOGIN {}\r\n", None),
            (b"a LOGIN {5}\n", None),
            (b"a LOGIN {99999999999}\r\n", None),
            (b"a LOGIN {4294967295}\r\n", Some((u32::MAX, false))),
            (b"a LOGIN \"{5}\"\r\n", None),
            (b"a NOOP\r\n", None),
        ];
        for (command, expected) in table {
            assert_eq!(
                literal_announced(command),
                *expected,
                "{:?}",
                String::from_utf8_lossy(command)
            );
        }
    }

    #[test]
    fn frames_commands_with_literals() {
        let mut framer = Framer::default();
        assert_eq!(
            framer.feed(b"a LOGIN {3}\r\n"),
            (13, Framed::SyncLiteral { length_bytes: 3 })
        );
        assert!(framer.accept_literal(3));
        assert_eq!(framer.feed(b"bo"), (2, Framed::NeedInput));
        assert_eq!(framer.feed(b"b {2+}\r\npw"), (10, Framed::NeedInput));
        assert_eq!(framer.feed(b"\r\na NOOP\r\n"), (2, Framed::Command));
        assert_eq!(framer.command(), b"a LOGIN {3}\r\nbob {2+}\r\npw\r\n");
        assert_eq!(framer.feed(b"a NOOP\r\n"), (8, Framed::Command));
        assert_eq!(framer.command(), b"a NOOP\r\n");
    }

    #[test]
    fn limits() {
        let mut framer = Framer::default();
        let line = vec![b'x'; COMMAND_BYTES_MAX + 1];
        assert_eq!(framer.feed(&line), (0, Framed::TooBig { literal: false }));
        let mut framer = Framer::default();
        let command = format!("a LOGIN {{{}+}}\r\n", LITERAL_BYTES_MAX + 1);
        assert_eq!(
            framer.feed(command.as_bytes()),
            (command.len(), Framed::TooBig { literal: true })
        );
        assert!(!framer.accept_literal(LITERAL_BYTES_MAX as u32 + 1));
    }

    #[test]
    fn tags_and_words() {
        assert_eq!(tag_of(b"a1 NOOP\r\n"), Some("a1"));
        assert_eq!(tag_of(b"a+ NOOP\r\n"), None);
        assert_eq!(tag_of(b"* NOOP\r\n"), None);
        assert_eq!(tag_of(b"\r\n"), None);
        assert_eq!(
            command_word(b"a uid fetch 1 UID\r\n").as_deref(),
            Some("UID")
        );
        assert_eq!(
            command_word(b"a append INBOX {3}\r\n").as_deref(),
            Some("APPEND")
        );
        assert_eq!(command_word(b"a\r\n"), None);
    }
}
