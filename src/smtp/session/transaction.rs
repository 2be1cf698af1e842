//! `Transaction`: a finished message as the socket loop stores it, borrowed from the
//! session, or rebuilt from parts the loop kept (while sender checks run).

/// The finished message, as the caller stores it. Valid right after `Event::Deliver`.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// The reverse path without brackets; `""` for the null path `<>`.
    pub mail_from: &'a str,
    /// The body as received, after dot-unstuffing, without our Received header.
    pub body: &'a [u8],
    /// The accepted recipients, each followed by `\n` (addresses never contain LF).
    rcpts: &'a str,
    n_rcpts: usize,
}

impl<'a> Transaction<'a> {
    /// The accepted recipients in RCPT order as the client spelled them, exact repeats
    /// removed: `A@x` and `a@x` both appear (one inbox; the store keeps one copy and lists
    /// both). `<postmaster>` appears as `postmaster@<first configured domain>`, or
    /// `postmaster@<hostname>` on a catch-all server.
    pub fn rcpts(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let rcpts: &'a str = self.rcpts;
        rcpts.split_terminator('\n')
    }

    /// How many recipients `rcpts()` yields.
    pub fn n_rcpts(&self) -> usize {
        self.n_rcpts
    }

    /// The recipients as one text, each followed by `\n`: with `n_rcpts` and
    /// `from_parts`, what a caller keeps to rebuild the transaction after the session has
    /// moved on (a message whose sender checks are still running).
    pub fn rcpts_text(&self) -> &'a str {
        self.rcpts
    }

    /// A transaction from parts kept by a caller (see `rcpts_text`).
    pub fn from_parts(
        mail_from: &'a str,
        rcpts_text: &'a str,
        n_rcpts: usize,
        body: &'a [u8],
    ) -> Transaction<'a> {
        Transaction {
            mail_from,
            body,
            rcpts: rcpts_text,
            n_rcpts,
        }
    }
}
